complete --keep-order --exclusive --command devbox --arguments "(DEVBOX_COMPLETE=fish devbox -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"

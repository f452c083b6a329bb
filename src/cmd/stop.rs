use anyhow::Result;

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::runtime::stop::stop_box;
use crate::state::{self, BoxConfig};

pub fn run(dirs: &Dirs, names: &[String], all: bool, quiet: bool) -> Result<i32> {
    let names = if all {
        state::list_names(dirs)?
    } else {
        names.to_vec()
    };
    for n in &names {
        state::existing(dirs, n)?;
    }
    let mut sessions = 0;
    for n in &names {
        let was = crate::runtime::status_now(dirs, n)?;
        let stopped = stop_box(dirs, n)?;
        sessions += stopped.sessions;
        if !quiet && !all {
            match (was.in_use(), stopped.sessions) {
                (false, _) => println!("Box '{n}' was not running"),
                (true, 0) => println!("Stopped box '{n}'"),
                (true, s) => println!("Stopped box '{n}' (ended {})", sessions_word(s)),
            }
        }
    }
    if all {
        // Every box was stopped above, each by what holds its overlay; the holder goes last,
        // with any namespaces left under names that have no box.
        if let Some(h) = Holder::current(dirs)? {
            h.kill(dirs);
        }
        if !quiet {
            match sessions {
                0 => println!("Stopped all boxes"),
                s => println!("Stopped all boxes (ended {})", sessions_word(s)),
            }
        }
    }
    Ok(0)
}

/// `devbox restart NAME...`: stop, then start with the saved settings.
pub fn restart(dirs: &Dirs, names: &[String], quiet: bool) -> Result<i32> {
    for n in names {
        state::existing(dirs, n)?;
    }
    for n in names {
        let stopped = stop_box(dirs, n)?;
        let cfg = BoxConfig::load(dirs, n)?;
        crate::runtime::join::start_box(dirs, &cfg)?;
        if !quiet {
            match stopped.sessions {
                0 => println!("Restarted box '{n}'"),
                s => println!("Restarted box '{n}' (ended {})", sessions_word(s)),
            }
        }
    }
    Ok(0)
}

fn sessions_word(n: usize) -> String {
    if n == 1 {
        "1 session".into()
    } else {
        format!("{n} sessions")
    }
}

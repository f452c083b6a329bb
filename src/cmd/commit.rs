//! `devbox commit BOX [--tag NAME]`: a new image in the store from a box.

use anyhow::Result;

use crate::paths::Dirs;
use crate::progress::Term;

pub fn run(dirs: &Dirs, name: &str, tag: Option<&str>, quiet: bool) -> Result<i32> {
    let term = Term::new(quiet);
    let rec = crate::store::layout::commit(dirs, name, tag, &term)?;
    if !quiet {
        println!(
            "Committed box '{name}' as image {}{} (manifest {}). Make a box from it with: devbox create {}",
            crate::store::short(&rec.id),
            tag.map(|t| format!(" ({t})")).unwrap_or_default(),
            rec.digest.as_deref().unwrap_or("-"),
            tag.unwrap_or(&rec.id)
        );
    }
    Ok(0)
}

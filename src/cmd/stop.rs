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
        state::validate_name(n)?;
        BoxConfig::load(dirs, n)?;
    }
    for n in &names {
        stop_box(dirs, n)?;
        if !quiet && !all {
            println!("Stopped box '{n}'");
        }
    }
    if all {
        if let Some(h) = Holder::current(dirs)? {
            h.kill(dirs);
        }
        if !quiet {
            println!("Stopped all boxes");
        }
    }
    Ok(0)
}

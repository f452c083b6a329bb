use anyhow::{bail, Context, Result};

use crate::cli::UnshareArg;
use crate::paths::Dirs;
use crate::progress::Term;
use crate::state::{self, BoxConfig, Isolate};
use crate::store;

pub fn run(
    dirs: &Dirs,
    image: Option<&str>,
    name: Option<String>,
    sha256: Option<&str>,
    unshare: &[UnshareArg],
    quiet: bool,
) -> Result<i32> {
    let image = match image {
        Some(i) => i.to_string(),
        None => default_image()?,
    };
    let image = image.as_str();
    let name = name.unwrap_or_else(|| state::name_from_image(image));
    let isolate = isolates(unshare);
    let spec = NewBox {
        image,
        name: &name,
        sha256,
        isolate,
        project: None,
        project_file: None,
        provisioning: false,
        mounts: Vec::new(),
        packages: &[],
    };
    let cfg = make(dirs, spec, quiet)?;
    if !quiet {
        println!(
            "Created box '{name}' from {} (image {}). Enter with: devbox enter {name}",
            cfg.image,
            store::short(&cfg.image_id)
        );
    }
    Ok(0)
}

/// IMAGE as the box records it: a local file by its absolute path, anything else as given.
fn asked_for(image: &str) -> String {
    match store::ImageRef::classify(image) {
        store::ImageRef::File(p) => std::fs::canonicalize(&p).unwrap_or(p).display().to_string(),
        _ => image.to_string(),
    }
}

/// The image of `devbox create` without IMAGE: the user configuration's `default_image`, else
/// devbox's default.
fn default_image() -> Result<String> {
    use crate::project::{Defaults, Flags, HostEnv, UserConfig};
    let user = UserConfig::load(&HostEnv::current())?;
    let s = crate::project::resolve(&Flags::default(), None, &user, &Defaults::builtin());
    Ok(s.image.value)
}

/// The namespaces `--unshare` names (`all` is every one, `none` none).
pub fn isolates(unshare: &[UnshareArg]) -> Vec<Isolate> {
    let mut isolate = Vec::new();
    for u in unshare {
        match u {
            UnshareArg::All => isolate.extend([Isolate::Net, Isolate::Pid, Isolate::Ipc]),
            UnshareArg::Net => isolate.push(Isolate::Net),
            UnshareArg::Pid => isolate.push(Isolate::Pid),
            UnshareArg::Ipc => isolate.push(Isolate::Ipc),
            UnshareArg::None => {}
        }
    }
    isolate.sort();
    isolate.dedup();
    isolate
}

/// Makes box `name` from `image`: checks everything first, imports the image, then assembles
/// the box in a temp dir and renames it into place. `project` is the fingerprint of the
/// devbox.toml the box is made from.
/// What a new box is made of.
pub struct NewBox<'a> {
    pub image: &'a str,
    pub name: &'a str,
    pub sha256: Option<&'a str>,
    pub isolate: Vec<Isolate>,
    /// Fingerprint of the devbox.toml the box is made from.
    pub project: Option<String>,
    /// That devbox.toml (canonical path).
    pub project_file: Option<std::path::PathBuf>,
    /// Its packages and setup are still to run: the box is not made until they have.
    pub provisioning: bool,
    pub mounts: Vec<state::MountSpec>,
    /// A project's packages, which a root built from a package archive installs with itself.
    pub packages: &'a [String],
}

pub fn make(dirs: &Dirs, spec: NewBox, quiet: bool) -> Result<BoxConfig> {
    let NewBox {
        image,
        name,
        sha256,
        mut isolate,
        project,
        project_file,
        provisioning,
        mounts,
        packages,
    } = spec;
    state::validate_name(name)?;
    if let Some(h) = sha256 {
        crate::fetch::validate_sha256_arg(h)?;
    }
    isolate.sort();
    isolate.dedup();
    dirs.ensure_store()?;
    let final_dir = dirs.box_dir(name);
    if final_dir.exists() {
        bail!("a box named '{name}' already exists\n  hint: pick another name with --name, or remove it with `devbox rm {name}`");
    }
    crate::idmap::Mapping::current()?;

    let term = Term::new(quiet);
    let rec = store::import_with(dirs, image, sha256, packages, &term)?;
    crate::ui::detail(crate::ui::image_line(image, &rec));

    // The box appears under its name only when complete. Its temp dir is claimed (flocked)
    // until then, so no other devbox's sweep of leftovers takes it; one left by a killed create
    // is removed by the next sweep (claiming sweeps too).
    let tmp = dirs
        .boxes
        .join(format!(".tmp-{name}-{}", std::process::id()));
    let _claim = store::claim_dir(dirs, &tmp)?;
    let cfg = BoxConfig {
        name: name.to_string(),
        // What the user asked for: an image already in the store under another source
        // (the same bytes from another file or URL) is still this box's IMAGE.
        image: asked_for(image),
        image_id: rec.id.clone(),
        created: state::now_rfc3339(),
        isolate,
        backend: None,
        env: rec.env.clone(),
        project,
        project_file,
        provisioning,
        mounts,
        home: None,
        project_dir: None,
        vars: Default::default(),
        sudoers: false,
    };
    // A removed box of the same name may have left namespaces in the holder, or processes on
    // its deleted layer: the new box must never be entered through them.
    if crate::runtime::status_now(dirs, name)?.in_use() {
        let ended = crate::runtime::stop::stop_locked(name)?;
        eprintln!(
            "devbox: ended what was left of an earlier box '{name}' ({} session(s))",
            ended.sessions
        );
    }
    let made = (|| -> Result<()> {
        std::fs::create_dir(tmp.join("merged"))?;
        cfg.save_in(&tmp)?;
        std::fs::rename(&tmp, &final_dir)
            .with_context(|| format!("a box named '{name}' appeared while this one was being made"))
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(cfg)
}

/// `devbox create --from BOX [NAME]`: a new box with BOX's image (shared, not copied), a copy
/// of BOX's own layer and its settings. A clone is a box of its own: it belongs to no project.
pub fn clone(
    dirs: &Dirs,
    from: &str,
    name: Option<String>,
    unshare: &[UnshareArg],
    quiet: bool,
) -> Result<i32> {
    state::existing(dirs, from)?;
    let name = name.unwrap_or_else(|| format!("{from}-copy"));
    state::validate_name(&name)?;
    let src = BoxConfig::load(dirs, from)?;
    if src.provisioning {
        bail!("box '{from}' is still being provisioned; clone it when its setup has finished");
    }
    let final_dir = dirs.box_dir(&name);
    if final_dir.exists() {
        bail!("a box named '{name}' already exists\n  hint: pick another name, or remove it with `devbox rm {name}`");
    }
    if store::load(dirs, &src.image_id).is_none() {
        bail!(
            "the image of box '{from}' ({}) is no longer in the store",
            store::short(&src.image_id)
        );
    }
    if crate::runtime::status_now(dirs, from)?.in_use() && !quiet {
        eprintln!(
            "Box '{from}' is running: its layer is copied as it is on disk now (`devbox stop {from}` first for a still copy)"
        );
    }
    if crate::runtime::status_now(dirs, &name)?.in_use() {
        crate::runtime::stop::stop_locked(&name)?;
    }
    let tmp = dirs
        .boxes
        .join(format!(".tmp-{name}-{}", std::process::id()));
    let _claim = store::claim_dir(dirs, &tmp)?;
    let mut cfg = src.clone();
    cfg.name = name.clone();
    cfg.created = state::now_rfc3339();
    cfg.project = None;
    cfg.project_file = None;
    if !unshare.is_empty() {
        cfg.isolate = isolates(unshare);
    }
    let made = (|| -> Result<()> {
        std::fs::create_dir(tmp.join("merged"))?;
        let upper = dirs.box_dir(from).join("upper");
        if upper.exists() {
            let status = crate::runtime::helper("__clone")
                .arg(&upper)
                .arg(tmp.join("upper"))
                .stdin(std::process::Stdio::null())
                .status()
                .context("cannot run devbox's copy helper")?;
            if !status.success() {
                bail!("cannot copy the layer of box '{from}'");
            }
        }
        cfg.save_in(&tmp)?;
        std::fs::rename(&tmp, &final_dir)
            .with_context(|| format!("a box named '{name}' appeared while this one was being made"))
    })();
    if let Err(e) = made {
        let _ = store::remove_tree(&tmp);
        return Err(e);
    }
    if !quiet {
        println!(
            "Created box '{name}' as a clone of '{from}' (image {}). Enter with: devbox enter {name}",
            store::short(&cfg.image_id)
        );
    }
    Ok(0)
}

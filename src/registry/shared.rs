//! Directories every node shares, whoever runs it: the registry and the
//! log's directory. Containers (uid 65532) and people on the host write the
//! same `/tmp/sync_dir` and `/tmp/log`, so a node that makes one makes it as
//! `/tmp` is (mode 1777: anyone may add an entry, only its owner may remove
//! it), whatever its umask. A dir that is there already is left as it is;
//! when it cannot be used, [`explain`] says whose it is and what to do.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The mode of a shared dir: `/tmp`'s.
pub(crate) const SHARED_MODE: u32 = 0o1777;

/// Makes `dir` and its missing parents, each with [`SHARED_MODE`].
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match fs::create_dir(dir) {
        // Past the umask (mkdir may drop the sticky bit too). A file system
        // without modes keeps its own: the dir is still ours to use.
        Ok(()) => {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(SHARED_MODE));
            Ok(())
        }
        // Another node made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why `path` (a dir, or a file in one) cannot be used, and what to do;
/// `flag` is the option that picks another path. An error of our own (not
/// the system's) already says what it is about.
pub(crate) fn explain(path: &Path, e: &io::Error, flag: &str) -> String {
    let shown = path.display().to_string();
    if e.raw_os_error().is_none() {
        return if e.to_string().contains(&shown) {
            e.to_string()
        } else {
            format!("{shown}: {e}")
        };
    }
    // The nearest part of the path that exists is the one in the way.
    let Some((p, meta)) = path
        .ancestors()
        .find_map(|p| Some((p, p.symlink_metadata().ok()?)))
    else {
        return format!("{shown}: {e}");
    };
    let it = if p == path {
        "it".to_string()
    } else {
        p.display().to_string()
    };
    let not_a_dir = matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::EEXIST));
    if not_a_dir && !meta.is_dir() {
        return format!(
            "{shown}: {it} is a file, not a directory; remove it or give {flag} another path"
        );
    }
    // A dir others may write is not what refuses us.
    if e.kind() == io::ErrorKind::PermissionDenied && meta.is_dir() && meta.mode() & 0o002 == 0 {
        return format!(
            "{shown}: {e}: {it} belongs to uid {} with mode {:o}, so this user may not write \
             there; have its owner run 'chmod 1777 {}' (shared by every user, as /tmp is), \
             or give {flag} a path of your own",
            meta.uid(),
            meta.mode() & 0o7777,
            p.display()
        );
    }
    if e.kind() == io::ErrorKind::PermissionDenied && meta.is_file() && meta.mode() & 0o002 == 0 {
        return format!(
            "{shown}: {e}: {it} belongs to uid {} with mode {:o}, so this user may not write \
             it; have its owner run 'chmod a+rw {}' (nodes of every user write it), or give \
             {flag} a path of your own",
            meta.uid(),
            meta.mode() & 0o7777,
            p.display()
        );
    }
    format!("{shown}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pulse-shared-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn made_dirs_are_shared_as_tmp_is_and_existing_ones_are_left_alone() {
        let top = temp("made");
        let dir = top.join("a").join("b");
        create_dir(&dir).expect("made");
        for made in [top.join("a"), dir.clone()] {
            let mode = fs::metadata(&made).expect("made").permissions().mode();
            assert_eq!(mode & 0o7777, SHARED_MODE, "{}", made.display());
        }
        let own = top.join("own");
        fs::create_dir(&own).expect("own");
        fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).expect("chmod");
        create_dir(&own).expect("there already");
        let mode = fs::metadata(&own).expect("own").permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        let _ = fs::remove_dir_all(&top);
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let top = temp("file");
        let file = top.join("plain");
        fs::write(&file, "x").expect("file");
        let below = file.join("sub");
        let e = create_dir(&below).expect_err("a file is in the way");
        let why = explain(&below, &e, "--sync-dir");
        assert!(
            why.contains(&format!("{} is a file", file.display())) && why.contains("--sync-dir"),
            "{why}"
        );
        let e = create_dir(&file).expect_err("it is a file");
        let why = explain(&file, &e, "--log-file");
        assert!(why.contains("it is a file, not a directory"), "{why}");
        let _ = fs::remove_dir_all(&top);
    }

    #[test]
    fn a_dir_or_file_we_may_not_write_is_named_with_its_owner_and_the_fix() {
        let top = temp("denied");
        let dir = top.join("sync_dir");
        fs::create_dir(&dir).expect("dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        let why = explain(&dir, &denied, "--sync-dir");
        for part in ["it belongs to uid", "mode 755", "chmod 1777", "--sync-dir"] {
            assert!(why.contains(part), "{part}: {why}");
        }
        let log = dir.join("cluster.log");
        let why = explain(&log, &denied, "--log-file");
        assert!(
            why.contains(&format!("{} belongs to", dir.display())),
            "{why}"
        );
        fs::write(&log, "").expect("log");
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).expect("chmod");
        let why = explain(&log, &denied, "--log-file");
        assert!(why.contains("chmod a+rw"), "{why}");
        let _ = fs::remove_dir_all(&top);
    }
}

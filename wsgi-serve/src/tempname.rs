//! Unique names in the temporary directory for what this process creates there.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};

/// Calls `create` with `$TMPDIR/<stem>.<pid>.<random>` until a name is free (it fails with
/// `AlreadyExists` otherwise, as `create_new` and `DirBuilder::create` do), up to 16 draws. The
/// random part keeps another local user from taking the names in advance.
pub(crate) fn create_unique<T>(
    stem: &str,
    mut create: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..16 {
        match create(&name(&base, stem, std::process::id())) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name")))
}

/// Removes what [`create_unique`] made under `stem` for process `pid` and left behind (the
/// process was killed before it could clean up).
pub(crate) fn remove_leftovers(stem: &str, pid: u32) {
    let prefix = format!("{stem}.{pid}.");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

fn name(base: &Path, stem: &str, pid: u32) -> PathBuf {
    // std's randomly seeded hasher: a fresh draw each call, without a random crate.
    let draw = std::collections::hash_map::RandomState::new().build_hasher().finish();
    base.join(format!("{stem}.{pid}.{draw:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fresh_and_leftovers_go() {
        let stem = "wsgi-serve-tempname-test";
        let a = create_unique(stem, |p| std::fs::create_dir(p).map(|()| p.to_owned())).unwrap();
        let b = create_unique(stem, |p| std::fs::write(p, b"x").map(|()| p.to_owned())).unwrap();
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with(stem));
        // A taken name is skipped.
        let mut calls = 0;
        let c = create_unique(stem, |p| {
            calls += 1;
            if calls == 1 {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::create_dir(p).map(|()| p.to_owned())
        })
        .unwrap();
        assert_eq!(calls, 2);
        // Other errors are not retried.
        let e =
            create_unique(stem, |_| Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        remove_leftovers(stem, std::process::id());
        assert!(!a.exists() && !b.exists() && !c.exists());
    }
}

//! `--pid FILE`: the supervisor's process id, for init scripts and `kill -HUP $(cat FILE)`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The pid file, written when created and removed when dropped (at the supervisor's exit).
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`, atomically: a reader sees the old file or the whole
    /// new one, never a partial write (it is written beside `path`, then renamed over it).
    pub(crate) fn create(path: &Path) -> Result<PidFile, String> {
        let fail = |e: std::io::Error| {
            format!(
                "cannot write the pid file {}: {e} (--pid needs a writable directory that \
                 exists)",
                path.display()
            )
        };
        let name = path
            .file_name()
            .ok_or_else(|| format!("--pid {}: name a file, not a directory", path.display()))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        // A stale temporary file (or a link planted there) is removed, not followed; create_new
        // then refuses to follow one that appears meanwhile.
        let _ = std::fs::remove_file(&temp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut f| writeln!(f, "{}", std::process::id()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(fail(e));
        }
        Ok(PidFile { path: path.to_owned() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a newer supervisor may have taken the file over meanwhile.
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wsgi-serve-pid-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_the_pid_and_removes_it_when_dropped() {
        let dir = temp_dir("ok");
        let path = dir.join("server.pid");
        std::fs::write(&path, "stale\n").unwrap();
        let pid = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        // Nothing left beside it.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        drop(pid);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leaves_a_file_another_process_took_over() {
        let dir = temp_dir("taken");
        let path = dir.join("server.pid");
        let pid = PidFile::create(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pid);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = PidFile::create(Path::new("/nonexistent-dir/x.pid")).unwrap_err();
        assert!(err.contains("cannot write the pid file /nonexistent-dir/x.pid"), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }
}

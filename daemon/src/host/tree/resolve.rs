//! Walking an absolute path from `/`, component by component, by descriptor.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, CWD};
use rustix::io::Errno;

use super::*;

/// Walk `path` from `/`: links only in root-only directories are followed.
pub(super) fn resolve(path: &Path, create: Option<(u32, Owner)>) -> io::Result<Dir> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    let root = || {
        rustix::fs::openat(CWD, "/", DIR_FLAGS, Mode::empty()).map(|fd| Dir {
            fd,
            path: PathBuf::from("/"),
        })
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, path);
    let mut cur = root().map_err(|e| at("open", Path::new("/"), e))?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            let fd = rustix::fs::openat(&cur.fd, "..", DIR_FLAGS, Mode::empty())
                .map_err(|e| at("open", &cur.path, e))?;
            let mut up = cur.path.clone();
            up.pop();
            cur = Dir { fd, path: up };
            continue;
        }
        match cur.step(&name, create) {
            Ok(next) => cur = next,
            Err(e) if is_refused(&e) => {
                let st = rustix::fs::fstat(&cur.fd).map_err(|e| at("stat", &cur.path, e))?;
                let link = cur.child(&name);
                if !trusted(&st) {
                    return Err(refused(&link, Some(st.st_uid)));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(at("open", path, Errno::LOOP));
                }
                let target = rustix::fs::readlinkat(&cur.fd, name.as_os_str(), Vec::new())
                    .map_err(|e| at("read link", &link, e))?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    cur = root().map_err(|e| at("open", Path::new("/"), e))?;
                }
                push_front(&mut todo, &target);
            }
            Err(e) => return Err(e),
        }
    }
    cur.path = path.to_path_buf();
    Ok(cur)
}

/// Queue the components of `path` (`..` kept, `.` and `/` dropped) before what is queued.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    for p in parts.into_iter().rev() {
        todo.push_front(p);
    }
}

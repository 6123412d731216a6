use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn me() -> Owner {
    Owner::process()
}

/// A tree with a victim directory beside the one an attacker controls.
struct Scene {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    victim: PathBuf,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("app");
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(base.join("shared/storage")).expect("mkdir");
    // Writable by others: links in it are not root's, even when the tests run as root.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::create_dir_all(victim.join("1")).expect("mkdir");
    std::fs::write(victim.join("secret"), "s").expect("write");
    std::fs::write(victim.join("1/keep"), "k").expect("write");
    Scene {
        base,
        victim,
        _tmp: tmp,
    }
}

fn untouched(s: &Scene) {
    assert_eq!(ls(&s.victim), ["1", "secret"]);
    assert_eq!(ls(&s.victim.join("1")), ["keep"]);
    assert_eq!(
        std::fs::read_to_string(s.victim.join("secret")).expect("read"),
        "s"
    );
}

// The temp dir lives under a directory of this user, so links below it are not root's:
// `Dir::open` must refuse them (when running as root, /tmp is world-writable: refused too).
#[test]
fn a_link_on_the_way_to_a_tree_is_refused() {
    let s = scene();
    symlink(&s.victim, s.base.join("linked")).expect("symlink");
    let e = Dir::open(&s.base.join("linked")).expect_err("refused");
    assert!(is_refused(&e), "{e}");
    let e = Dir::create_all(&s.base.join("linked/new"), 0o755, me()).expect_err("refused");
    assert!(is_refused(&e), "{e}");
    assert!(e.to_string().contains("not followed"), "{e}");
    untouched(&s);
}

#[test]
fn a_link_in_every_position_below_a_dir_is_refused() {
    let s = scene();
    let root = Dir::open(&s.base).expect("open");
    // A link as a middle component, as the last component, and as the target name.
    symlink(&s.victim, s.base.join("shared/media")).expect("symlink");
    for rel in ["shared/media", "shared/media/1", "shared/media/new"] {
        let e = root.open_dir(rel).expect_err(rel);
        assert!(is_refused(&e), "{rel}: {e}");
        let e = root.create_dirs(rel, 0o755, me()).expect_err(rel);
        assert!(is_refused(&e), "{rel}: {e}");
    }
    let shared = root.open_dir("shared").expect("shared");
    assert_eq!(shared.kind("media").expect("kind"), Some(Kind::Symlink));
    assert!(shared.open_file("media").expect("open").is_none());
    // Writing replaces the link itself, never writes through it.
    shared
        .write_file("media", b"x", 0o600, me())
        .expect("write");
    assert_eq!(shared.kind("media").expect("kind"), Some(Kind::File));
    // A link to a file planted at a file's name: replaced as well.
    symlink(s.victim.join("secret"), s.base.join("shared/conf")).expect("symlink");
    shared
        .write_file("conf", b"new", 0o644, me())
        .expect("write");
    assert_eq!(
        std::fs::read_to_string(s.base.join("shared/conf")).expect("read"),
        "new"
    );
    // `..` and absolute names never leave the tree.
    for bad in ["..", "../victim", "/etc", "a/../../victim"] {
        assert!(root.open_dir(bad).is_err(), "{bad}");
        assert!(root.create_dirs(bad, 0o755, me()).is_err(), "{bad}");
    }
    for bad in ["..", "a/b", "/x", ""] {
        assert!(root.write_file(bad, b"x", 0o600, me()).is_err(), "{bad}");
        assert!(root.remove(bad).is_err(), "{bad}");
    }
    untouched(&s);
}

#[test]
fn a_planted_temp_name_or_fifo_changes_nothing() {
    let s = scene();
    let dir = Dir::open(&s.base).expect("open");
    // The old predictable temp name, linked to the victim: never used.
    symlink(s.victim.join("secret"), s.base.join(".keys.strackt-tmp")).expect("symlink");
    dir.write_file("keys", b"k1", 0o600, me()).expect("write");
    dir.write_file("keys", b"k2", 0o640, me()).expect("write");
    assert_eq!(
        std::fs::read_to_string(s.base.join("keys")).expect("read"),
        "k2"
    );
    let mode = std::fs::metadata(s.base.join("keys"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert_eq!(ls(&s.base), [".keys.strackt-tmp", "keys", "shared"]);
    // A FIFO where a file is read: nothing, at once (no hang).
    nix::unistd::mkfifo(
        &s.base.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    assert!(dir.open_file("fifo").expect("open").is_none());
    assert!(open_file(&s.base.join("fifo")).expect("open").is_none());
    assert!(open_file(&s.base.join(".keys.strackt-tmp")).is_err() || !is_root());
    untouched(&s);
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn temp_names_are_unique_and_unguessable() {
    let a = temp_name(OsStr::new("authorized_keys")).expect("name");
    let b = temp_name(OsStr::new("authorized_keys")).expect("name");
    assert_ne!(a, b);
    let a = a.to_string_lossy().into_owned();
    assert!(
        a.starts_with(".authorized_keys.") && a.ends_with(".strackt-tmp"),
        "{a}"
    );
    assert_eq!(
        a.len(),
        ".authorized_keys.".len() + 16 + ".strackt-tmp".len()
    );
    let long = "n".repeat(255);
    assert!(temp_name(OsStr::new(&long)).expect("name").len() <= 255);
}

#[test]
fn existing_ancestors_keep_owner_and_mode_new_dirs_get_theirs() {
    let s = scene();
    std::fs::set_permissions(&s.base, std::fs::Permissions::from_mode(0o751)).expect("chmod");
    let before = Dir::open(&s.base)
        .expect("open")
        .owner_and_mode()
        .expect("stat");
    let d = Dir::create_all(&s.base.join("releases/7/x"), 0o705, me()).expect("create");
    assert_eq!(d.owner_and_mode().expect("stat"), (me(), 0o705));
    let mid = Dir::open(&s.base.join("releases")).expect("open");
    assert_eq!(mid.owner_and_mode().expect("stat"), (me(), 0o705));
    assert_eq!(
        Dir::open(&s.base)
            .expect("open")
            .owner_and_mode()
            .expect("stat"),
        before
    );
    // create_dirs the same way below a Dir.
    let root = Dir::open(&s.base).expect("open");
    std::fs::set_permissions(
        s.base.join("shared"),
        std::fs::Permissions::from_mode(0o770),
    )
    .expect("chmod");
    root.create_dirs("shared/storage/uploads", 0o700, me())
        .expect("create");
    let mode = |p: &str| {
        std::fs::metadata(s.base.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("shared"), 0o770);
    assert_eq!(mode("shared/storage/uploads"), 0o700);
}

#[test]
fn removing_a_tree_follows_no_link_inside() {
    let s = scene();
    let tree = s.base.join("releases/1");
    std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
    std::fs::write(tree.join("a/b/f"), "f").expect("write");
    symlink(&s.victim, tree.join("a/to-victim")).expect("symlink");
    symlink(&s.victim, tree.join("a/b/deeper")).expect("symlink");
    let releases = Dir::open(&s.base.join("releases")).expect("open");
    releases.remove("1").expect("remove");
    assert_eq!(ls(&s.base.join("releases")), Vec::<String>::new());
    releases.remove("1").expect("absent is fine");
    // The tree's own name swapped for a link: the link goes, not its target.
    symlink(&s.victim, s.base.join("releases/2")).expect("symlink");
    releases.remove("2").expect("remove");
    assert_eq!(ls(&s.base.join("releases")), Vec::<String>::new());
    untouched(&s);
}

#[test]
fn a_dir_stays_the_same_dir_when_its_path_is_swapped() {
    let s = scene();
    let releases_path = s.base.join("releases");
    std::fs::create_dir_all(releases_path.join("1")).expect("mkdir");
    let releases = Dir::open(&releases_path).expect("open");
    std::fs::rename(&releases_path, s.base.join("moved")).expect("mv");
    symlink(&s.victim, &releases_path).expect("symlink");
    releases.remove("1").expect("remove");
    assert_eq!(ls(&s.base.join("moved")), Vec::<String>::new());
    untouched(&s);
}

#[test]
fn chown_tree_follows_no_link() {
    let s = scene();
    let tree = s.base.join("shared/storage");
    std::fs::create_dir_all(tree.join("d")).expect("mkdir");
    std::fs::write(tree.join("d/f"), "f").expect("write");
    symlink(&s.victim, tree.join("d/link")).expect("symlink");
    let shared = Dir::open(&s.base.join("shared")).expect("open");
    // Chowning to ourselves is allowed unprivileged; what matters is that it walks only the
    // tree (a link to the victim would make it fail or wander when followed).
    shared.chown_tree("storage", me()).expect("chown");
    assert_eq!(shared.kind("storage").expect("kind"), Some(Kind::Dir));
    untouched(&s);
}

#[test]
fn swap_symlink_replaces_in_one_rename_and_leaves_no_temp() {
    let s = scene();
    let dir = Dir::open(&s.base).expect("open");
    dir.swap_symlink("current", Some(Path::new("releases/1")))
        .expect("swap");
    dir.swap_symlink("current", Some(Path::new("releases/2")))
        .expect("swap");
    assert_eq!(
        dir.read_link("current").expect("readlink"),
        Some(PathBuf::from("releases/2"))
    );
    assert_eq!(ls(&s.base), ["current", "shared"]);
    dir.swap_symlink("current", None).expect("remove");
    dir.swap_symlink("current", None).expect("absent is fine");
    assert_eq!(ls(&s.base), ["shared"]);
}

/// A source tree with a file, a nested directory, a link to the victim and a FIFO.
fn source_tree(s: &Scene) -> PathBuf {
    let src = s.base.join("scratch/uploads");
    std::fs::create_dir_all(src.join("2026/05")).expect("mkdir");
    std::fs::write(src.join("2026/05/photo.jpg"), vec![7u8; 300_000]).expect("write");
    std::fs::write(src.join("top.txt"), "t").expect("write");
    std::fs::set_permissions(src.join("top.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::fs::set_permissions(src.join("2026"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    symlink(&s.victim, src.join("2026/to-victim")).expect("symlink");
    symlink(s.victim.join("secret"), src.join("secret-link")).expect("symlink");
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    src
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn copy_tree_copies_files_dirs_and_links_as_links() {
    let s = scene();
    let src = source_tree(&s);
    let from = Dir::open(&s.base.join("scratch")).expect("open");
    let shared = Dir::open(&s.base.join("shared")).expect("open");
    let notes = from.copy_tree("uploads", &shared, "uploads").expect("copy");
    let dst = s.base.join("shared/uploads");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("fifo") && notes[0].contains("not copied"),
        "{notes:?}"
    );
    assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
    assert_eq!(ls(&dst.join("2026")), ["05", "to-victim"]);
    assert_eq!(
        std::fs::read(dst.join("2026/05/photo.jpg")).expect("read"),
        vec![7u8; 300_000]
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("top.txt")).expect("read"),
        "t"
    );
    // Modes, owners and modification times kept; links are links, pointing where they did.
    assert_eq!(mode_of(&dst.join("top.txt")), 0o640);
    assert_eq!(mode_of(&dst.join("2026")), 0o750);
    let (a, b) = (
        std::fs::symlink_metadata(src.join("2026/05/photo.jpg")).expect("stat"),
        std::fs::symlink_metadata(dst.join("2026/05/photo.jpg")).expect("stat"),
    );
    assert_eq!((a.uid(), a.gid(), a.mtime()), (b.uid(), b.gid(), b.mtime()));
    assert_eq!(
        std::fs::read_link(dst.join("2026/to-victim")).expect("readlink"),
        s.victim
    );
    assert!(std::fs::symlink_metadata(dst.join("secret-link"))
        .expect("stat")
        .file_type()
        .is_symlink());
    // No temporary name left beside it; the source is untouched.
    assert_eq!(ls(&s.base.join("shared")), ["storage", "uploads"]);
    assert_eq!(ls(&src), ["2026", "fifo", "secret-link", "top.txt"]);
    untouched(&s);
}

#[test]
fn copy_tree_replaces_a_link_planted_at_the_destination_and_follows_none() {
    let s = scene();
    source_tree(&s);
    let from = Dir::open(&s.base.join("scratch")).expect("open");
    let shared = Dir::open(&s.base.join("shared")).expect("open");
    // The destination name is a link to the victim: a directory cannot be renamed over
    // it (as with rename(2)), so the copy fails, leaving no temporary copy and the victim
    // untouched.
    symlink(&s.victim, s.base.join("shared/uploads")).expect("symlink");
    // Links at the old predictable temp names: never used.
    symlink(&s.victim, s.base.join("shared/.uploads.strackt-tmp")).expect("symlink");
    let e = from
        .copy_tree("uploads", &shared, "uploads")
        .expect_err("a directory over a link");
    assert!(e.to_string().contains("rename"), "{e}");
    assert_eq!(
        ls(&s.base.join("shared")),
        [".uploads.strackt-tmp", "storage", "uploads"]
    );
    untouched(&s);
    std::fs::remove_file(s.base.join("shared/uploads")).expect("rm");
    from.copy_tree("uploads", &shared, "uploads").expect("copy");
    let dst = s.base.join("shared/uploads");
    assert!(std::fs::symlink_metadata(&dst)
        .expect("stat")
        .file_type()
        .is_dir());
    assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
    // A single file as the source, over a link to the victim's file.
    symlink(s.victim.join("secret"), s.base.join("shared/top.txt")).expect("symlink");
    let up = from.open_dir("uploads").expect("open");
    up.copy_tree("top.txt", &shared, "top.txt").expect("copy");
    assert_eq!(
        std::fs::read_to_string(s.base.join("shared/top.txt")).expect("read"),
        "t"
    );
    // A link as the source: recreated, not followed (the victim's file is not copied).
    up.copy_tree("secret-link", &shared, "copied-link")
        .expect("copy");
    assert!(std::fs::symlink_metadata(s.base.join("shared/copied-link"))
        .expect("stat")
        .file_type()
        .is_symlink());
    // The source's own name swapped for a link after it was opened: its directory is the
    // one copied (the descriptor), and a link in its place is copied as a link.
    std::fs::rename(s.base.join("scratch/uploads"), s.base.join("scratch/moved")).expect("mv");
    symlink(&s.victim, s.base.join("scratch/uploads")).expect("symlink");
    from.copy_tree("uploads", &shared, "again").expect("copy");
    assert!(std::fs::symlink_metadata(s.base.join("shared/again"))
        .expect("stat")
        .file_type()
        .is_symlink());
    assert_eq!(
        ls(&s.base.join("shared")),
        [
            ".uploads.strackt-tmp",
            "again",
            "copied-link",
            "storage",
            "top.txt",
            "uploads"
        ]
    );
    untouched(&s);
}

#[test]
fn move_to_renames_and_removes_nothing_else() {
    let s = scene();
    source_tree(&s);
    let from = Dir::open(&s.base.join("scratch")).expect("open");
    let shared = Dir::open(&s.base.join("shared")).expect("open");
    let notes = from.move_to("uploads", &shared, "uploads").expect("move");
    // One filesystem: a rename (the FIFO moves along, no note).
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(ls(&s.base.join("scratch")), Vec::<String>::new());
    assert_eq!(
        ls(&s.base.join("shared/uploads")),
        ["2026", "fifo", "secret-link", "top.txt"]
    );
    untouched(&s);
}

/// Across filesystems when /dev/shm is another one than the temp dir (it is on Debian).
#[test]
fn move_to_copies_across_filesystems() {
    let s = scene();
    source_tree(&s);
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
    if dev(other.path()) == dev(&s.base) {
        return;
    }
    let from = Dir::open(&s.base.join("scratch")).expect("open");
    let to = Dir::open(other.path()).expect("open");
    let notes = from.move_to("uploads", &to, "uploads").expect("move");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(ls(&s.base.join("scratch")), Vec::<String>::new());
    let dst = other.path().join("uploads");
    assert_eq!(ls(&dst), ["2026", "secret-link", "top.txt"]);
    assert_eq!(
        std::fs::read(dst.join("2026/05/photo.jpg")).expect("read"),
        vec![7u8; 300_000]
    );
    untouched(&s);
}

#[test]
fn links_in_root_only_directories_are_followed() {
    // /proc/self is a link in /proc (root's, 0555): followed, as /var/run -> /run would be.
    let d = Dir::open(Path::new("/proc/self/fdinfo")).expect("open through a root link");
    assert!(!d.entries().expect("ls").is_empty());
    // `..` inside a followed target resolves physically.
    assert!(Dir::open(Path::new("/proc/self/../self/fdinfo")).is_ok());
}

#[test]
fn an_open_directory_gets_owner_and_mode_on_its_descriptor_not_through_a_swapped_path() {
    let s = scene();
    let dir = s.base.join("stage");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let opened = Dir::open(&dir).expect("open");
    // The path now names a link to the victim: the directory opened is changed, not the victim.
    std::fs::rename(&dir, s.base.join("moved")).expect("move");
    symlink(&s.victim, &dir).expect("symlink");
    let victim_before = std::fs::metadata(&s.victim)
        .expect("stat")
        .permissions()
        .mode();
    let owner = Owner {
        uid: me().uid,
        gid: 4242,
    };
    opened.set_owner_and_mode(owner, 0o750).expect("set");
    assert_eq!(opened.owner_and_mode().expect("stat"), (owner, 0o750));
    let moved = Dir::open(&s.base.join("moved")).expect("open");
    assert_eq!(moved.owner_and_mode().expect("stat"), (owner, 0o750));
    let victim = std::fs::metadata(&s.victim).expect("stat");
    assert_eq!(victim.permissions().mode(), victim_before);
    assert_ne!(victim.gid(), 4242);
    untouched(&s);
}

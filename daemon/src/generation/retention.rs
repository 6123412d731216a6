//! Which generation directories to prune (pure). Records are never pruned: only directories.

/// A generation directory on disk, and whether its generation ran successfully (a directory
/// whose row is missing or failed counts as unsuccessful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDisk {
    /// Generation id.
    pub id: u64,
    /// It became active at some point (`active` or `superseded`).
    pub successful: bool,
}

/// Given the generation directories on disk (oldest first), the current generation and the
/// previous one, return the ids whose directories to prune: every unsuccessful one but the
/// current, and the oldest successful ones beyond `keep` (at least 2). The current and previous
/// generations are never returned.
pub fn to_prune(
    on_disk: &[OnDisk],
    current: Option<u64>,
    previous: Option<u64>,
    keep: usize,
) -> Vec<u64> {
    let keep = keep.max(2);
    let protected = |id: u64| Some(id) == current || Some(id) == previous;
    let successful: Vec<u64> = on_disk
        .iter()
        .filter(|g| g.successful)
        .map(|g| g.id)
        .collect();
    // The protected generations fill the window first; the newest others fill the rest.
    let mut kept = successful.iter().filter(|id| protected(**id)).count();
    let mut out: Vec<u64> = on_disk
        .iter()
        .filter(|g| !g.successful && Some(g.id) != current)
        .map(|g| g.id)
        .collect();
    for &id in successful.iter().rev().filter(|id| !protected(**id)) {
        if kept < keep {
            kept += 1;
        } else {
            out.push(id);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::{to_prune, OnDisk};

    fn ok(ids: &[u64]) -> Vec<OnDisk> {
        ids.iter()
            .map(|&id| OnDisk {
                id,
                successful: true,
            })
            .collect()
    }

    #[test]
    fn keeps_the_newest_and_never_current_or_previous() {
        assert_eq!(
            to_prune(&ok(&[1, 2, 3, 4, 5]), Some(5), Some(4), 3),
            vec![1, 2]
        );
        assert_eq!(
            to_prune(&ok(&[1, 2, 3]), Some(3), Some(2), 10),
            Vec::<u64>::new()
        );
        // After a rollback to 2, the current is old: it stays, and so does the previous (5).
        assert_eq!(
            to_prune(&ok(&[1, 2, 3, 4, 5]), Some(2), Some(5), 2),
            vec![1, 3, 4]
        );
        // keep below 2 is raised to 2.
        assert_eq!(to_prune(&ok(&[1, 2, 3]), Some(3), Some(2), 0), vec![1]);
    }

    #[test]
    fn unsuccessful_directories_go_unless_current_and_do_not_count() {
        let mut gens = ok(&[1, 3, 5]);
        gens.insert(
            1,
            OnDisk {
                id: 2,
                successful: false,
            },
        );
        gens.push(OnDisk {
            id: 6,
            successful: false,
        });
        // 6 is current mid-switch: kept; 2 failed: pruned; 1, 3, 5 fit in keep 3.
        assert_eq!(to_prune(&gens, Some(6), Some(5), 3), vec![2]);
    }

    #[test]
    fn a_rebuilt_old_generation_is_kept_while_current_or_previous() {
        // Rolled back to 1 (rebuilt from its record) from 15, with keep 3.
        assert_eq!(
            to_prune(&ok(&[1, 13, 14, 15]), Some(1), Some(15), 3),
            vec![13]
        );
        // Then a new generation 16: 1 is neither current nor previous any more.
        assert_eq!(
            to_prune(&ok(&[1, 14, 15, 16]), Some(16), Some(1), 3),
            vec![14]
        );
    }
}

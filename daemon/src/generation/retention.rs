//! Which generation directories to delete (pure).

/// Given successful generations (ids, oldest first), the current one and the previous one,
/// return the ids to delete so that at most `keep` successful generations remain. The current
/// and previous generations are never returned.
pub fn to_delete(
    successful: &[u64],
    current: Option<u64>,
    previous: Option<u64>,
    keep: usize,
) -> Vec<u64> {
    let keep = keep.max(2);
    let protected = |id: u64| Some(id) == current || Some(id) == previous;
    // The protected generations fill the window first; the newest others fill the rest.
    let mut kept = successful.iter().filter(|id| protected(**id)).count();
    let mut out = Vec::new();
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
    use super::to_delete;

    #[test]
    fn keeps_the_newest_and_never_current_or_previous() {
        assert_eq!(to_delete(&[1, 2, 3, 4, 5], Some(5), Some(4), 3), vec![1, 2]);
        assert_eq!(
            to_delete(&[1, 2, 3], Some(3), Some(2), 10),
            Vec::<u64>::new()
        );
        // After a rollback to 2, the current is old: it stays, and so does the previous (5).
        assert_eq!(
            to_delete(&[1, 2, 3, 4, 5], Some(2), Some(5), 2),
            vec![1, 3, 4]
        );
        // keep below 2 is raised to 2.
        assert_eq!(to_delete(&[1, 2, 3], Some(3), Some(2), 0), vec![1]);
    }
}

//! Set operations on postings lists: sorted, deduplicated series refs.
//!
//! Query planning intersects a few label matchers' lists whose sizes often
//! differ by orders of magnitude (`job="x"` vs. `__name__="y"`), so the
//! intersection and difference switch from a linear merge to galloping
//! search when one side is much longer than the other.

/// Size ratio above which walking the long list linearly costs more than
/// galloping through it: galloping is O(short * log(long / short)).
const GALLOP_RATIO: usize = 16;

/// A series reference as postings lists hold it: `u64` in blocks and queries, `u32`
/// (an offset from a base) in the head, where the lists are most of the memory an
/// index costs per series.
pub trait Ref: Copy + Ord + Default {}
impl Ref for u32 {}
impl Ref for u64 {}

/// First index `i >= from` with `list[i] >= x` (or `list.len()`), found by
/// exponential probing from `from` and then binary search in the last gap.
/// Cheap when the answer is near `from`, logarithmic when it is far.
#[inline]
fn gallop<T: Ref>(list: &[T], from: usize, x: T) -> usize {
    let mut lo = from;
    let mut hi = from;
    let mut step = 1;
    // Invariant: everything before `lo` is < x.
    while let Some(&v) = list.get(hi) {
        if v >= x {
            break;
        }
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(list.len());
    lo + list
        .get(lo..hi)
        .map_or(0, |s| s.partition_point(|&v| v < x))
}

/// Intersection of two sorted lists into `out` (cleared first).
fn intersect2_into<T: Ref>(a: &[T], b: &[T], out: &mut Vec<T>) {
    out.clear();
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return;
    }
    if long.len() / short.len() >= GALLOP_RATIO {
        let mut j = 0;
        for &x in short {
            j = gallop(long, j, x);
            match long.get(j) {
                None => break,
                Some(&y) if y == x => {
                    out.push(x);
                    j += 1;
                }
                Some(_) => {}
            }
        }
        return;
    }
    // Branch-free merge: every candidate is stored, the output cursor only
    // advances on a match, and each side steps when it is not ahead. On
    // overlapping lists a data-dependent branch would mispredict constantly.
    // The output never outgrows the shorter input, so it is sized up front.
    out.resize(short.len(), T::default());
    let (mut i, mut j, mut k) = (0, 0, 0);
    while let (Some(&x), Some(&y)) = (short.get(i), long.get(j)) {
        if let Some(slot) = out.get_mut(k) {
            *slot = x;
        }
        k += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.truncate(k);
}

/// Refs present in every list. No lists means no constraint was given, which
/// callers treat as "nothing matched", so the result is empty.
pub fn intersect<T: Ref>(lists: &[&[T]]) -> Vec<T> {
    match lists {
        [] => Vec::new(),
        [only] => only.to_vec(),
        [a, b] => {
            let mut out = Vec::with_capacity(a.len().min(b.len()));
            intersect2_into(a, b, &mut out);
            out
        }
        _ => {
            // Smallest lists first: the running result only shrinks, so each
            // later (longer) list is probed as few times as possible.
            let mut sorted: Vec<&[T]> = lists.to_vec();
            sorted.sort_unstable_by_key(|l| l.len());
            let mut out = Vec::with_capacity(sorted[0].len());
            let mut scratch = Vec::with_capacity(sorted[0].len());
            intersect2_into(sorted[0], sorted[1], &mut out);
            for list in &sorted[2..] {
                if out.is_empty() {
                    break;
                }
                intersect2_into(&out, list, &mut scratch);
                std::mem::swap(&mut out, &mut scratch);
            }
            out
        }
    }
}

/// Sorted, deduplicated merge of two sorted lists, appended to `out`.
fn merge2_into<T: Ref>(a: &[T], b: &[T], out: &mut Vec<T>) {
    // Branch-free like the intersection: write into a pre-sized buffer and
    // advance whichever side(s) supplied the smaller value.
    let start = out.len();
    out.resize(start + a.len() + b.len(), T::default());
    let (mut i, mut j, mut k) = (0, 0, start);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        if let Some(slot) = out.get_mut(k) {
            *slot = x.min(y);
        }
        k += 1;
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.truncate(k);
    out.extend_from_slice(a.get(i..).unwrap_or(&[]));
    out.extend_from_slice(b.get(j..).unwrap_or(&[]));
}

/// Refs present in any list.
///
/// Lists are merged pairwise in a balanced tree: O(n log k) like a heap-based
/// k-way merge, but every pass is a sequential two-way merge, which is
/// friendlier to the branch predictor and the cache.
pub fn union<T: Ref>(lists: &[&[T]]) -> Vec<T> {
    let mut non_empty = lists.iter().copied().filter(|l| !l.is_empty());
    let (Some(first), second) = (non_empty.next(), non_empty.next()) else {
        return Vec::new();
    };
    let Some(second) = second else {
        return first.to_vec();
    };
    let mut level: Vec<Vec<T>> = Vec::new();
    let mut pending = Some(first);
    for list in std::iter::once(second).chain(non_empty) {
        match pending.take() {
            Some(prev) => {
                let mut out = Vec::new();
                merge2_into(prev, list, &mut out);
                level.push(out);
            }
            None => pending = Some(list),
        }
    }
    if let Some(last) = pending {
        level.push(last.to_vec());
    }
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some(a) = it.next() {
            match it.next() {
                Some(b) => {
                    let mut out = Vec::new();
                    merge2_into(&a, &b, &mut out);
                    next.push(out);
                }
                None => next.push(a),
            }
        }
        level = next;
    }
    level.pop().unwrap_or_default()
}

/// Refs in `a` that are not in `b`.
pub fn without<T: Ref>(a: &[T], b: &[T]) -> Vec<T> {
    if a.is_empty() || b.is_empty() {
        return a.to_vec();
    }
    let mut out = Vec::with_capacity(a.len());
    if a.len() / b.len() >= GALLOP_RATIO {
        // Few removals: copy the runs between them wholesale.
        // `start`: first element of `a` not yet copied; `pos`: search cursor.
        let (mut start, mut pos) = (0, 0);
        for &y in b {
            pos = gallop(a, pos, y);
            if pos >= a.len() {
                break;
            }
            if a.get(pos) == Some(&y) {
                out.extend_from_slice(a.get(start..pos).unwrap_or(&[]));
                pos += 1;
                start = pos;
            }
        }
        out.extend_from_slice(a.get(start..).unwrap_or(&[]));
        return out;
    }
    let gallop_b = b.len() / a.len() >= GALLOP_RATIO;
    let mut j = 0;
    for &x in a {
        j = if gallop_b {
            gallop(b, j, x)
        } else {
            let mut k = j;
            while b.get(k).is_some_and(|&y| y < x) {
                k += 1;
            }
            k
        };
        if b.get(j) != Some(&x) {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    // The tests use u64 refs (blocks'); these pin the generic functions to them.
    fn gallop(list: &[u64], from: usize, x: u64) -> usize {
        super::gallop(list, from, x)
    }
    fn intersect(lists: &[&[u64]]) -> Vec<u64> {
        super::intersect(lists)
    }
    fn union(lists: &[&[u64]]) -> Vec<u64> {
        super::union(lists)
    }
    fn without(a: &[u64], b: &[u64]) -> Vec<u64> {
        super::without(a, b)
    }

    #[test]
    fn gallop_finds_lower_bound() {
        let l = [1, 3, 5, 7, 9, 11, 13];
        for from in 0..l.len() {
            for x in 0..16 {
                let want = from + l[from..].partition_point(|&v| v < x);
                assert_eq!(gallop(&l, from, x), want, "from {from} x {x}");
            }
        }
        assert_eq!(gallop(&[], 0, 5), 0);
    }

    #[test]
    fn intersect_basic() {
        assert_eq!(intersect(&[]), Vec::<u64>::new());
        assert_eq!(intersect(&[&[1, 2, 3]]), vec![1, 2, 3]);
        assert_eq!(intersect(&[&[1, 2, 3], &[2, 3, 4]]), vec![2, 3]);
        assert_eq!(intersect(&[&[1, 2, 3], &[2, 3, 4], &[3]]), vec![3]);
        assert_eq!(intersect(&[&[1, 2, 3], &[], &[3]]), Vec::<u64>::new());
        let long: Vec<u64> = (0..10_000).collect();
        assert_eq!(
            intersect(&[&long, &[5, 500, 9_999, 20_000]]),
            vec![5, 500, 9_999]
        );
        assert_eq!(
            intersect(&[&[u64::MAX], &[0, u64::MAX], &long]),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn union_basic() {
        assert_eq!(union(&[]), Vec::<u64>::new());
        assert_eq!(union(&[&[], &[]]), Vec::<u64>::new());
        assert_eq!(union(&[&[], &[4, 5]]), vec![4, 5]);
        assert_eq!(union(&[&[1, 3], &[2, 3], &[0, 9]]), vec![0, 1, 2, 3, 9]);
        assert_eq!(union(&[&[u64::MAX], &[0]]), vec![0, u64::MAX]);
    }

    #[test]
    fn without_basic() {
        assert_eq!(without(&[1, 2, 3], &[]), vec![1, 2, 3]);
        assert_eq!(without(&[], &[1]), Vec::<u64>::new());
        assert_eq!(without(&[1, 2, 3, 4], &[2, 4, 6]), vec![1, 3]);
        let long: Vec<u64> = (0..1000).collect();
        let mut want = long.clone();
        want.retain(|&x| x != 10 && x != 999);
        assert_eq!(without(&long, &[10, 999, 5000]), want);
        assert_eq!(without(&[7, 500], &long), Vec::<u64>::new());
    }

    /// A sorted, deduplicated list; a narrow value range makes overlaps
    /// likely, and sizes vary widely so the galloping paths are exercised.
    fn list() -> impl Strategy<Value = Vec<u64>> {
        prop_oneof![
            prop::collection::btree_set(0u64..64, 0..20),
            prop::collection::btree_set(0u64..2_000, 0..1_500),
            prop::collection::btree_set(any::<u64>(), 0..10),
        ]
        .prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn matches_btreeset(lists in prop::collection::vec(list(), 0..6)) {
            let refs: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
            let sets: Vec<BTreeSet<u64>> =
                lists.iter().map(|l| l.iter().copied().collect()).collect();

            let want_union: Vec<u64> =
                sets.iter().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(union(&refs), want_union);

            let want_inter: Vec<u64> = match sets.split_first() {
                None => Vec::new(),
                Some((first, rest)) => first
                    .iter()
                    .copied()
                    .filter(|x| rest.iter().all(|s| s.contains(x)))
                    .collect(),
            };
            prop_assert_eq!(intersect(&refs), want_inter);

            if let [a, b, ..] = refs.as_slice() {
                let want: Vec<u64> = sets[0].difference(&sets[1]).copied().collect();
                prop_assert_eq!(without(a, b), want);
                let want: Vec<u64> = sets[1].difference(&sets[0]).copied().collect();
                prop_assert_eq!(without(b, a), want);
            }
        }
    }
}

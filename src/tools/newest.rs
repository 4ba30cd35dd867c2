//! Keeping the newest N of a listing that AWS pages oldest first.
//!
//! FilterLogEvents and DescribeEvents hand out pages from the start of the window; an
//! investigator wants the end of it. [`Newest`] keeps the newest `limit` items seen across
//! any number of pages (memory bounded by `limit`, whatever the pages hold), and remembers
//! whether it had to drop any — which is what `truncated` tells the agent.

/// The newest `limit` items by `time`, and whether older ones were dropped.
#[derive(Debug)]
pub struct Newest<T> {
    limit: usize,
    items: Vec<T>,
    dropped: bool,
}

impl<T> Newest<T> {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            items: Vec::new(),
            dropped: false,
        }
    }

    /// Adds a page of items; keeps only the newest `limit` of all seen so far.
    pub fn add(&mut self, page: impl IntoIterator<Item = T>, time: impl Fn(&T) -> i64) {
        self.items.extend(page);
        // Sorting each page in is cheap next to the AWS call that fetched it.
        self.items.sort_by_key(|item| std::cmp::Reverse(time(item)));
        if self.items.len() > self.limit {
            self.items.truncate(self.limit);
            self.dropped = true;
        }
    }

    /// Items held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.limit
    }

    /// The items, newest first, and whether any older one was dropped.
    pub fn finish(self) -> (Vec<T>, bool) {
        (self.items, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_across_pages_that_come_oldest_first() {
        let mut newest = Newest::new(3);
        for page in [vec![1, 2, 3], vec![4, 5], vec![6]] {
            newest.add(page, |t| *t);
        }
        assert_eq!(newest.finish(), (vec![6, 5, 4], true));
    }

    #[test]
    fn nothing_dropped_when_everything_fits() {
        let mut newest = Newest::new(5);
        newest.add([2, 1], |t| *t);
        assert!(!newest.is_full());
        assert_eq!(newest.finish(), (vec![2, 1], false));
    }
}

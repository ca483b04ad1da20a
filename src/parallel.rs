//! CPU work over many hosts at once, on every core, in a fixed order.

/// `work` on every item, spread over the machine's cores (rendering is
/// CPU work, and hosts are independent); the results in the items' order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below this, starting threads costs more than it saves.
    const PER_THREAD_AT_LEAST: usize = 16;
    let chunk = items.len().div_ceil(threads).max(PER_THREAD_AT_LEAST);
    if items.len() <= chunk {
        return items.iter().map(&work).collect();
    }
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(results) => results,
                // A panic is a bug; let it surface as one.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_items_order() {
        for count in [0, 1, 15, 16, 17, 33, 1000] {
            let items: Vec<usize> = (0..count).collect();
            let doubled = super::map(&items, |item| item * 2);
            assert_eq!(
                doubled,
                items.iter().map(|item| item * 2).collect::<Vec<_>>()
            );
        }
    }
}

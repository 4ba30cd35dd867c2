//! Following an AWS listing to a bound, on the SDK's own paginators
//! (`….into_paginator().items().send()`): the items, and whether more remained.

use aws_smithy_async::future::pagination_stream::PaginationStream;

/// Up to `max` items of a paginated listing; answers them and whether there were more (the
/// next page is only fetched when the bound has not been reached).
pub async fn take_items<T, E>(
    mut items: PaginationStream<Result<T, E>>,
    max: usize,
) -> Result<(Vec<T>, bool), E> {
    let mut taken = Vec::new();
    while let Some(item) = items.next().await {
        if taken.len() == max {
            return Ok((taken, true));
        }
        taken.push(item?);
    }
    Ok((taken, false))
}

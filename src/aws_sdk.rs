//! One way to configure the AWS SDK, for the daemon's own calls (STS, Test Connection) and
//! the tools alike: named timeouts and retries, so no call can hang on an endpoint that
//! accepts and then stalls, and every caller fails the same, predictable way.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region};

/// AWS endpoints answer a TCP connect in milliseconds; seconds mean a network problem.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a read call; the slowest of ours (a 1 MB FilterLogEvents page) takes a few
/// seconds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// A whole call, retries included: long enough for three attempts of a slow page, short
/// enough that an agent hears about a stalled endpoint within a minute.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(40);
/// Tries per call (the SDK's standard retry: throttling and transient errors, with backoff).
pub const MAX_ATTEMPTS: u32 = 3;

/// The SDK's defaults for `region`, with our timeouts and retries.
pub fn loader(region: &str) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
}

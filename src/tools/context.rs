//! The AWS side of a tool run: the SDK configuration (the ambient credentials — in a
//! sandbox, the ones the daemon injected — and region) and a client per service.

use std::time::SystemTime;

use aws_config::SdkConfig;

#[derive(Debug, Clone)]
pub struct AwsContext {
    config: SdkConfig,
    /// "Now" for every time window of this run.
    pub now: SystemTime,
}

impl AwsContext {
    /// The SDK's default chain (environment variables first) in `region`, else the ambient
    /// one, with the timeouts and retries every AWS call of ours has.
    pub async fn from_environment(region: Option<String>) -> Self {
        let region = region
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| crate::config::ambient_region().to_string());
        Self::new(crate::aws_sdk::loader(&region).load().await)
    }

    pub fn new(config: SdkConfig) -> Self {
        Self {
            config,
            now: SystemTime::now(),
        }
    }

    /// The same clients with "now" reset (a long-lived server runs many tools).
    pub fn at_now(&self) -> Self {
        Self {
            config: self.config.clone(),
            now: SystemTime::now(),
        }
    }

    pub fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| crate::config::DEFAULT_REGION.into())
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.config)
    }
    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.config)
    }
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.config)
    }
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config)
    }
    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.config)
    }
    pub fn eks(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.config)
    }
    pub fn elasticache(&self) -> aws_sdk_elasticache::Client {
        aws_sdk_elasticache::Client::new(&self.config)
    }
}

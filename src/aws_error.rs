//! Reading an AWS error's code and message, also when the SDK could not parse the body.
//!
//! A JSON-protocol service answered in XML (by a proxy, or an emulator) reaches the SDK as an
//! "unhandled" error with no code; the code and message are still in the raw body, and an
//! operator deserves `AccessDenied: User ... is not authorized` rather than a debug dump.

use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Error codes AWS services use for "your policy does not allow this".
pub const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
    "AuthorizationError",
    "NotAuthorized",
];

/// Error codes that mean the credentials themselves are bad, not the policy.
pub const BAD_CREDENTIAL_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "InvalidAccessKeyId",
];

/// What kind of failure an AWS call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A policy, boundary or SCP refused the action.
    Denied,
    /// The credentials are expired, unknown or badly signed.
    BadCredentials,
    /// No answer: network, DNS, timeout.
    Unreachable,
    /// AWS answered with some other error.
    Other,
}

/// An AWS call's failure, read for people: its class, code and one-line message.
#[derive(Debug, Clone)]
pub struct AwsFailure {
    pub class: FailureClass,
    pub code: Option<String>,
    /// `Code: message` when AWS said so, else the SDK's description.
    pub message: String,
}

/// Reads an SDK error: the code and message (also from XML bodies) and what kind it is.
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, text) = code_and_message(err);
    let message = match (&code, text, http_status(err)) {
        (Some(code), Some(text), _) => format!("{code}: {text}"),
        (Some(code), None, _) => code.clone(),
        // An answer without an AWS error in it (a proxy's page, a server's crash): its
        // status says enough; the body is no use to an operator.
        (None, _, Some(status)) => format!("HTTP {status} without an AWS error code"),
        (None, _, None) => DisplayErrorContext(err).to_string(),
    };
    let class = if code.as_deref().is_some_and(|c| DENIED_CODES.contains(&c))
        // Some emulators and proxies answer a bare 403 the SDK cannot parse.
        || (code.is_none() && http_status(err) == Some(403))
    {
        FailureClass::Denied
    } else if code
        .as_deref()
        .is_some_and(|c| BAD_CREDENTIAL_CODES.contains(&c))
    {
        FailureClass::BadCredentials
    } else if matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    ) {
        FailureClass::Unreachable
    } else {
        FailureClass::Other
    };
    AwsFailure {
        class,
        code,
        message,
    }
}

/// The error's code and message, from the SDK's metadata or else from an XML body.
pub fn code_and_message<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> (Option<String>, Option<String>) {
    let body = err
        .raw_response()
        .and_then(|r| r.body().bytes())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default();
    let code = err
        .code()
        .map(str::to_owned)
        .or_else(|| xml_field(body, "Code"));
    let message = err
        .message()
        .map(str::to_owned)
        .or_else(|| xml_field(body, "Message"));
    (code, message)
}

/// The HTTP status of the answer, when there was one.
pub fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..end].trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::xml_field;

    #[test]
    fn reads_fields_of_an_xml_error_body() {
        let body = "<ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                    <Message>User: x is not authorized</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_field(body, "Message").as_deref(),
            Some("User: x is not authorized")
        );
        assert_eq!(xml_field(body, "Type"), None);
        assert_eq!(xml_field("{}", "Code"), None);
    }
}

//! Process exit codes, following sysexits(3) so scripts and systemd can tell failures apart.

use std::process::ExitCode;

/// Why the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything asked for worked.
    Ok,
    /// 64: the command line was wrong.
    Usage,
    /// 65: the input data (tool arguments, a request body) was wrong.
    DataErr,
    /// 69: a service we need (AWS, IMDS, Docker, the daemon) is unavailable.
    Unavailable,
    /// 77: AWS (or the daemon) denied permission.
    NoPerm,
    /// 78: the configuration is wrong.
    Config,
    /// A sandbox's own exit code, passed on by `autoheal sandbox run`.
    Passthrough(u8),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Usage => 64,
            Exit::DataErr => 65,
            Exit::Unavailable => 69,
            Exit::NoPerm => 77,
            Exit::Config => 78,
            Exit::Passthrough(code) => code,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

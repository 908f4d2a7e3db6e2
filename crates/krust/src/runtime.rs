//! `krust runtime`: the embedded OCI runtime's command line (runc's flags), parsed here and
//! run by `krust_agent::runtime::oci::cli`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use krust_agent::runtime::oci::cli::{Invocation, Verb};

/// The embedded OCI runtime (youki's libcontainer), with runc's flags.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// The state directory (the agent's is `<data-dir>/youki`).
    #[arg(long, default_value = "/run/krust/youki")]
    root: PathBuf,
    /// Where failures are logged.
    #[arg(long)]
    log: Option<PathBuf>,
    /// The log's format (`json`, the only one; accepted for runc's callers).
    #[arg(long, default_value = "json")]
    log_format: String,
    #[command(subcommand)]
    verb: RuntimeVerb,
}

#[derive(Debug, Subcommand)]
enum RuntimeVerb {
    /// Creates a container from a bundle; its process waits for `start`.
    Create {
        /// The bundle (with `config.json`).
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Where the container's process id is written.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Where the master end of the container's terminal is sent.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// The container's id.
        id: String,
    },
    /// Starts a created container.
    Start {
        /// The container's id.
        id: String,
    },
    /// Runs a process in a running container, in the foreground.
    Exec {
        /// Runs it on a terminal.
        #[arg(long, short)]
        tty: bool,
        /// The container's id.
        id: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Sends a signal to a container's process.
    Kill {
        /// To all of the container's processes.
        #[arg(long, short)]
        all: bool,
        /// The container's id.
        id: String,
        /// The signal (a number or a name).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Removes a container.
    Delete {
        /// Kills a running container first.
        #[arg(long, short)]
        force: bool,
        /// The container's id.
        id: String,
    },
    /// Prints a container's state.
    State {
        /// The container's id.
        id: String,
    },
}

/// Runs `args`; the process's exit code.
pub fn run(args: RuntimeArgs) -> i32 {
    let verb = match args.verb {
        RuntimeVerb::Create { bundle, pid_file, console_socket, id } => {
            Verb::Create { id, bundle, pid_file, console_socket }
        }
        RuntimeVerb::Start { id } => Verb::Start { id },
        RuntimeVerb::Exec { tty, id, command } => Verb::Exec { id, tty, args: command },
        RuntimeVerb::Kill { all, id, signal } => Verb::Kill { id, signal, all },
        RuntimeVerb::Delete { force, id } => Verb::Delete { id, force },
        RuntimeVerb::State { id } => Verb::State { id },
    };
    let _ = args.log_format;
    krust_agent::runtime::oci::cli::run(&Invocation { root: args.root, log: args.log, verb })
}

//! The host program's functions that Rust calls, by name: a misspelt
//! one does not compile, and a test checks each is defined in the program.

macro_rules! host_functions {
    ($($variant:ident = $name:literal,)*) => {
        /// A function of the host program (src/transport/remote/*.sh) that
        /// a program's `main` calls.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum HostFn {
            $($variant,)*
        }

        impl HostFn {
            #[cfg(test)]
            const ALL: &[HostFn] = &[$(HostFn::$variant,)*];

            /// Its name in the shell.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(HostFn::$variant => $name,)*
                }
            }
        }
    };
}

host_functions! {
    AptUpdate = "mc_apt_update",
    ArtifactFetch = "mc_artifact_fetch",
    ArtifactSwitch = "mc_artifact_switch",
    Await = "mc_await",
    Backup = "mc_backup",
    BackupBegin = "mc_backup_begin",
    BackupEnd = "mc_backup_end",
    Begin = "mc_begin",
    Certificate = "mc_certificate",
    Commit = "mc_commit",
    CommitState = "mc_commit_state",
    Confirm = "mc_confirm",
    DaemonReload = "mc_daemon_reload",
    Database = "mc_database",
    Directory = "mc_directory",
    Finish = "mc_finish",
    FlushRenames = "mc_flush_renames",
    Generate = "mc_generate",
    Group = "mc_group",
    Handler = "mc_handler",
    HandlerArmed = "mc_handler_armed",
    Live = "mc_live",
    NeedGroup = "mc_need_group",
    NeedUser = "mc_need_user",
    ObserveAccounts = "mc_observe_accounts",
    ObserveArtifact = "mc_observe_artifact",
    ObserveCertificate = "mc_observe_certificate",
    ObserveDatabase = "mc_observe_database",
    ObserveDirectories = "mc_observe_directories",
    ObserveGenerated = "mc_observe_generated",
    ObserveHealth = "mc_observe_health",
    ObserveLeftovers = "mc_observe_leftovers",
    ObserveOs = "mc_observe_os",
    ObservePackages = "mc_observe_packages",
    ObservePaths = "mc_observe_paths",
    ObserveRecord = "mc_observe_record",
    ObserveRepository = "mc_observe_repository",
    ObserveServices = "mc_observe_services",
    ObserveTransaction = "mc_observe_transaction",
    ObserveVenv = "mc_observe_venv",
    ObserveVersions = "mc_observe_versions",
    Packages = "mc_packages",
    Put = "mc_put",
    Remove = "mc_remove",
    Service = "mc_service",
    ServicesEnable = "mc_services_enable",
    ServicesStart = "mc_services_start",
    Stage = "mc_stage",
    StageDirs = "mc_stage_dirs",
    StartRun = "mc_start_run",
    Step = "mc_step",
    TaskRun = "mc_task_run",
    TaskScript = "mc_task_script",
    UnsafePaths = "mc_unsafe_paths",
    User = "mc_user",
    Validate = "mc_validate",
    Venv = "mc_venv",
    WaitChild = "mc_wait_child",
}

#[cfg(test)]
mod tests {
    use super::HostFn;

    #[test]
    fn every_function_rust_calls_is_defined_in_the_host_program() {
        for function in HostFn::ALL {
            let definition = format!("\n{}() {{\n", function.name());
            assert!(
                super::super::program::REMOTE_FUNCTIONS.contains(&definition),
                "{} is not defined in src/transport/remote/",
                function.name()
            );
        }
    }
}

//! `admin create` and `token create`: the homeserver's own tasks.

use super::*;

pub(crate) fn admin_create(role_dirs: &[PathBuf], args: cli::AdminCreateArgs) -> Result<ExitCode> {
    let (localpart, server) = args
        .user
        .trim_start_matches('@')
        .split_once(':')
        .unwrap_or_default();
    if server != args.host {
        bail!(
            "{} belongs to the server {server}, not to {}: an account is made on its own server",
            args.user,
            args.host
        );
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        if line.is_empty() {
            bail!("--password-stdin: stdin gave an empty first line");
        }
        line
    } else {
        new_password()?
    };
    let task_args = [
        ("localpart".to_string(), localpart.to_string()),
        ("password".to_string(), password.clone()),
    ]
    .into_iter()
    .collect();
    let user_id = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "admin create",
        &task_args,
        &args.connect,
        std::slice::from_ref(&password),
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "Created {}, an admin, on {}.",
        user_id.trim(),
        args.host
    )?;
    if !args.password_stdin {
        writeln!(
            stdout,
            "Its password, shown this once (matrixctl keeps no copy): {password}"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn token_create(role_dirs: &[PathBuf], args: cli::TokenCreateArgs) -> Result<ExitCode> {
    let expiry_time = match args.expires {
        Some(ms) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_millis();
            (now + u128::from(ms)).to_string()
        }
        None => String::new(),
    };
    let task_args = [
        (
            "uses".to_string(),
            args.uses.map(|uses| uses.to_string()).unwrap_or_default(),
        ),
        ("expiry_time".to_string(), expiry_time),
    ]
    .into_iter()
    .collect();
    let token = run_task(
        role_dirs,
        &args.inventory.path(),
        &args.host,
        "token create",
        &task_args,
        &args.connect,
        &[],
    )?;
    let uses = match args.uses {
        None => "any number of registrations".to_string(),
        Some(1) => "1 registration".to_string(),
        Some(uses) => format!("{uses} registrations"),
    };
    let valid = args.expires.map_or("with no end".to_string(), |ms| {
        format!("for {} hours", ms / 3_600_000)
    });
    println!(
        "Created a registration token on {}, for {uses}, valid {valid}:\n{}",
        args.host,
        token.trim()
    );
    Ok(ExitCode::SUCCESS)
}

/// Random text for a password: 24 characters of URL-safe base64.
pub(crate) fn new_password() -> Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 18];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

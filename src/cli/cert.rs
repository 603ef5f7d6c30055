//! `flightbench cert`: a self-signed certificate for testing `serve --tls-cert`.

use crate::http::tls::self_signed;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CertArgs {
    /// Where to write the certificate (PEM).
    #[arg(long, default_value = "flightbench-cert.pem")]
    pub cert: PathBuf,
    /// Where to write the private key (PEM, mode 0600).
    #[arg(long, default_value = "flightbench-key.pem")]
    pub key: PathBuf,
    /// DNS names and IP addresses the certificate covers.
    #[arg(long = "name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub names: Vec<String>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: CertArgs) -> anyhow::Result<()> {
    for path in [&args.cert, &args.key] {
        super::ensure_usage!(args.force || !path.exists(), "{} exists; pass --force to replace it", path.display());
    }
    let (cert, key) = self_signed(&args.names)?;
    std::fs::write(&args.cert, cert).with_context(|| format!("writing {}", args.cert.display()))?;
    write_private(&args.key, key.as_bytes()).with_context(|| format!("writing {}", args.key.display()))?;
    eprintln!(
        "wrote {} and {} (self-signed for {}); serve with --tls-cert {} --tls-key {}",
        args.cert.display(),
        args.key.display(),
        args.names.join(", "),
        args.cert.display(),
        args.key.display()
    );
    Ok(())
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

//! CPU profiles as people read them: pprof samples folded into collapsed stacks
//! (`thread;outer;…;leaf count`, the format inferno and Brendan Gregg's tools read)
//! and rendered as SVG flamegraphs with inferno.
//!
//! pprof's own `flamegraph` feature pins an old inferno, so folding is done here
//! (a dozen lines) and rendering calls current inferno directly. Used by the criterion
//! profiler in `benches/` and by the server's admin profile endpoint (`http::admin`).

use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profiler: {0}")]
    Sampling(#[from] pprof::Error),
    #[error("flamegraph rendering: {0}")]
    Render(String),
    #[error("writing the profile: {0}")]
    Io(#[from] std::io::Error),
}

/// Starts sampling every thread of the process at `frequency` Hz until the guard is
/// dropped (or reported).
pub fn start_sampling(frequency: i32) -> Result<pprof::ProfilerGuard<'static>, ProfileError> {
    Ok(pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        // Unwinding through these from a signal handler is where the default
        // unwinder is known to hang; their frames add nothing to a flamegraph.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()?)
}

/// Collapsed-stack lines, sorted so the output is stable for a given profile.
pub fn fold(report: &pprof::Report) -> Vec<String> {
    let mut lines: Vec<String> = report
        .data
        .iter()
        .map(|(frames, count)| {
            let mut line = if frames.thread_name.is_empty() {
                format!("thread-{}", frames.thread_id)
            } else {
                frames.thread_name.replace(';', ":")
            };
            // pprof stores the leaf first, and inlined symbols innermost first.
            for frame in frames.frames.iter().rev() {
                for symbol in frame.iter().rev() {
                    line.push(';');
                    line.push_str(&symbol.name().replace(';', ":"));
                }
            }
            line.push(' ');
            line.push_str(&count.to_string());
            line
        })
        .collect();
    lines.sort_unstable();
    lines
}

/// Renders collapsed-stack lines as an SVG flamegraph.
pub fn flamegraph_svg(lines: &[String], title: &str, out: impl Write) -> Result<(), ProfileError> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "samples".to_owned();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(|e| ProfileError::Render(e.to_string()))
}

/// Writes `name.folded` and `name.svg` into `dir`.
pub fn write_profile(
    report: &pprof::Report,
    dir: &std::path::Path,
    name: &str,
    title: &str,
) -> Result<(), ProfileError> {
    std::fs::create_dir_all(dir)?;
    let lines = fold(report);
    let mut folded = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.folded")))?);
    for line in &lines {
        writeln!(folded, "{line}")?;
    }
    folded.flush()?;
    let svg = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.svg")))?);
    flamegraph_svg(&lines, title, svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn burn(n: u64) -> u64 {
        (0..n).fold(0u64, |a, i| a.wrapping_mul(31).wrapping_add(i ^ (a >> 7)))
    }

    #[test]
    fn samples_fold_into_named_stacks_and_render() {
        let guard = pprof::ProfilerGuardBuilder::default().frequency(997).build().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut sink = 0;
        while std::time::Instant::now() < deadline {
            sink ^= burn(std::hint::black_box(100_000));
        }
        std::hint::black_box(sink);
        let report = guard.report().build().unwrap();
        let lines = fold(&report);
        assert!(!lines.is_empty(), "no samples in 300 ms of busy work");
        assert!(lines.iter().any(|l| l.contains("burn")), "our own function is not named: {lines:?}");
        assert!(lines.iter().all(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().is_ok()));
        let mut svg = Vec::new();
        flamegraph_svg(&lines, "test", &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("burn"));
    }
}

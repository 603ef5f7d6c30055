//! CPU profiles as people read them: pprof samples folded into collapsed stacks
//! (`thread;outer;…;leaf count`, the format inferno and Brendan Gregg's tools read)
//! and rendered as SVG flamegraphs with inferno.
//!
//! pprof's own `flamegraph` feature pins an old inferno, so folding is done here
//! (a dozen lines) and rendering calls current inferno directly. Used by the criterion
//! profiler in `benches/`, and by the server's admin profile endpoint (`http::admin`),
//! which `serve` hands a [`Sampler`].

use crate::http::admin::{ProfileFormat, Profiler};
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

/// The profiler `serve` hands its admin listener: pprof, folded and rendered here.
pub struct Sampler;

impl Profiler for Sampler {
    fn prime(&self) {
        prime();
    }

    fn take(&self, seconds: u32, frequency: u32, format: ProfileFormat) -> Result<(Vec<u8>, &'static str), String> {
        let guard = start_sampling(frequency as i32).map_err(|e| format!("starting the sampler: {e}"))?;
        std::thread::sleep(std::time::Duration::from_secs(u64::from(seconds)));
        let report = guard.report().build().map_err(|e| format!("building the report: {e}"))?;
        if format == ProfileFormat::Pprof {
            use pprof::protos::Message;
            let profile = report.pprof().map_err(|e| format!("encoding the pprof protobuf: {e}"))?;
            return Ok((profile.encode_to_vec(), "application/octet-stream"));
        }
        let lines = fold(&report);
        Ok(match format {
            ProfileFormat::Folded => (lines.join("\n").into_bytes(), "text/plain; charset=utf-8"),
            // An idle server gives no samples, and inferno renders nothing from
            // nothing: say so in the picture rather than fail.
            _ if lines.is_empty() => (
                empty_svg(&format!("No CPU samples in {seconds} s at {frequency} Hz: the server was idle.")),
                "image/svg+xml",
            ),
            _ => {
                let mut svg = Vec::new();
                let title = format!("flightbench serve: {seconds} s at {frequency} Hz");
                flamegraph_svg(&lines, &title, &mut svg).map_err(|e| e.to_string())?;
                (svg, "image/svg+xml")
            }
        })
    }
}

/// Starts sampling every thread of the process at `frequency` Hz until the guard is
/// dropped (or reported).
pub fn start_sampling(frequency: i32) -> Result<pprof::ProfilerGuard<'static>, ProfileError> {
    prime();
    Ok(builder(frequency).build()?)
}

/// Does pprof's one-time set-up now. Its first guard resolves a backtrace before it
/// samples, which takes seconds in a debug build; call this before starting the work
/// to profile, so that time is not taken out of the profile.
pub fn prime() {
    static PRIMED: std::sync::Once = std::sync::Once::new();
    PRIMED.call_once(|| drop(builder(1).build()));
}

fn builder(frequency: i32) -> pprof::ProfilerGuardBuilder {
    pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        // Unwinding through these from a signal handler is where the default
        // unwinder is known to hang; their frames add nothing to a flamegraph.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
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
            'frames: for frame in frames.frames.iter().rev() {
                for symbol in frame.iter().rev() {
                    let name = symbol.name();
                    if is_sampler_frame(&name) {
                        break 'frames;
                    }
                    line.push(';');
                    line.push_str(&name.replace(';', ":"));
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

/// The sampler's own frames (the signal handler unwinding the stack), which pprof
/// leaves at the leaf end of every stack when the binary is not optimised.
fn is_sampler_frame(name: &str) -> bool {
    name.starts_with("<pprof::backtrace") || name.starts_with("pprof::") || name.starts_with("backtrace::backtrace::")
}

/// Renders collapsed-stack lines as an SVG flamegraph.
pub fn flamegraph_svg(lines: &[String], title: &str, out: impl Write) -> Result<(), ProfileError> {
    render(lines, title, None, out)
}

/// Renders collapsed-stack lines (one or two counts per line) with a subtitle line
/// under the title, where the configuration and throughput go.
pub fn render(lines: &[String], title: &str, subtitle: Option<&str>, out: impl Write) -> Result<(), ProfileError> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.subtitle = subtitle.map(str::to_owned);
    options.count_name = "samples".to_owned();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(|e| ProfileError::Render(e.to_string()))
}

/// Folds per-thread stacks into one stack per thread *role*: `serve-0` and `serve-1`
/// become `serve`, `sqlx-sqlite-worker-7` becomes `sqlx-sqlite-worker`, so a
/// flamegraph shows one tower per kind of work and two profiles of different runs
/// line up frame for frame. Threads whose name starts with one of `drop` are left
/// out (the in-process load generator's `load-N` threads, say).
pub fn by_thread_role(lines: &[String], drop: &[&str]) -> Vec<String> {
    let mut merged = std::collections::BTreeMap::<String, u64>::new();
    for line in lines {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        let (thread, frames) = stack.split_once(';').unwrap_or((stack, ""));
        if drop.iter().any(|prefix| thread.starts_with(prefix)) {
            continue;
        }
        let role = match thread.rsplit_once('-') {
            Some((role, n)) if !role.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => role,
            _ => thread,
        };
        let key = if frames.is_empty() { role.to_owned() } else { format!("{role};{frames}") };
        *merged.entry(key).or_default() += count;
    }
    merged.into_iter().map(|(stack, count)| format!("{stack} {count}")).collect()
}

/// The differential of two folded profiles, as inferno's two-count lines: the shape
/// is `after`'s, red frames grew and blue frames shrank. `before` is scaled to
/// `after`'s sample total, so a run that simply took more samples is not all red.
pub fn differential(before: &[String], after: &[String]) -> Result<Vec<String>, ProfileError> {
    let options = inferno::differential::Options { normalize: true, strip_hex: true };
    let (before, after) = (before.join("\n"), after.join("\n"));
    let mut out = Vec::new();
    inferno::differential::from_readers(options, before.as_bytes(), after.as_bytes(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).lines().map(str::to_owned).collect())
}

/// A small SVG that says why there is no flamegraph (inferno renders nothing from
/// no samples).
pub fn empty_svg(message: &str) -> Vec<u8> {
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    format!(
        r#"<?xml version="1.0" standalone="no"?><svg xmlns="http://www.w3.org/2000/svg" width="900" height="40"><text x="10" y="25">{escaped}</text></svg>"#
    )
    .into_bytes()
}

/// Writes `name.folded` and `name.svg` into `dir`.
pub fn write_profile(
    report: &pprof::Report,
    dir: &std::path::Path,
    name: &str,
    title: &str,
) -> Result<(), ProfileError> {
    write_lines(&fold(report), dir, name, title, None).map(drop)
}

/// Writes collapsed-stack lines to `dir/name.folded` and their flamegraph (with an
/// optional subtitle) to `dir/name.svg`; returns both paths, folded first.
pub fn write_lines(
    lines: &[String],
    dir: &std::path::Path,
    name: &str,
    title: &str,
    subtitle: Option<&str>,
) -> Result<(std::path::PathBuf, std::path::PathBuf), ProfileError> {
    std::fs::create_dir_all(dir)?;
    let (folded_path, svg_path) = (dir.join(format!("{name}.folded")), dir.join(format!("{name}.svg")));
    let mut folded = std::io::BufWriter::new(std::fs::File::create(&folded_path)?);
    for line in lines {
        writeln!(folded, "{line}")?;
    }
    folded.flush()?;
    let mut svg = std::io::BufWriter::new(std::fs::File::create(&svg_path)?);
    render(lines, title, subtitle, &mut svg)?;
    svg.flush()?;
    Ok((folded_path, svg_path))
}

/// A frame name cut to `width` characters, with an ellipsis when cut: for one-line
/// listings of hot frames.
pub fn short_frame(frame: &str, width: usize) -> String {
    if frame.chars().count() <= width {
        return frame.to_owned();
    }
    let cut: String = frame.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Samples per leaf frame ("self" time), most first, from one-count or two-count
/// lines; for two-count (differential) lines the value is after − before, and the
/// list is sorted by that change, largest growth first.
pub fn by_leaf(lines: &[String]) -> Vec<(String, i64)> {
    let mut leaves = std::collections::HashMap::<&str, i64>::new();
    for line in lines {
        let mut fields = line.rsplitn(3, ' ');
        let (Some(last), Some(middle)) = (fields.next(), fields.next()) else { continue };
        let Ok(last) = last.parse::<i64>() else { continue };
        let (stack, value) = match (fields.next(), middle.parse::<i64>()) {
            (Some(stack), Ok(before)) => (stack, last - before),
            _ => (line.rsplit_once(' ').map_or("", |(stack, _)| stack), last),
        };
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *leaves.entry(leaf).or_default() += value;
    }
    let mut leaves: Vec<(String, i64)> = leaves.into_iter().map(|(leaf, n)| (leaf.to_owned(), n)).collect();
    leaves.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    leaves
}

/// Total samples in collapsed-stack lines (the last count of each line).
pub fn sample_total(lines: &[String]) -> u64 {
    lines.iter().filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok()).sum()
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

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn threads_merge_by_role_and_dropped_threads_go() {
        let folded = lines(
            "serve-0;main;read 3\nserve-1;main;read 4\nserve-1;main;write 1\nload-0;main;send 9\nsqlx-sqlite-worker-12;step 2\nmain 5\nv-8a;x 1",
        );
        assert_eq!(
            by_thread_role(&folded, &["load-"]),
            lines("main 5\nserve;main;read 7\nserve;main;write 1\nsqlx-sqlite-worker;step 2\nv-8a;x 1")
        );
    }

    #[test]
    fn frames_are_cut_to_width() {
        assert_eq!(short_frame("abc", 3), "abc");
        assert_eq!(short_frame("abcdé", 4), "abc…");
    }

    #[test]
    fn leaves_sum_self_time_and_changes() {
        let folded = lines("serve;read;memcpy 3\nserve;write;memcpy 2\nserve;read 4");
        assert_eq!(by_leaf(&folded), vec![("memcpy".to_owned(), 5), ("read".to_owned(), 4)]);
        let diff = lines("serve;read 10 4\nserve;parse 0 5\nserve;write 2 2");
        assert_eq!(by_leaf(&diff), vec![("parse".to_owned(), 5), ("write".to_owned(), 0), ("read".to_owned(), -6)]);
    }

    #[test]
    fn differentials_scale_before_to_after() {
        // `before` took twice the samples; normalised, `read` is unchanged and `parse`
        // appears from nothing.
        let before = lines("serve;read 20\nserve;write 20");
        let after = lines("serve;read 10\nserve;write 5\nserve;parse 5");
        let diff = differential(&before, &after).unwrap();
        assert!(diff.contains(&"serve;read 10 10".to_owned()), "{diff:?}");
        assert!(diff.contains(&"serve;write 10 5".to_owned()), "{diff:?}");
        assert!(diff.contains(&"serve;parse 0 5".to_owned()), "{diff:?}");
        let mut svg = Vec::new();
        render(&diff, "diff", Some("before vs after"), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("parse") && svg.contains("before vs after"));
    }
}

//! The progress bar `krust image pull` draws on a terminal while it downloads.

use std::io::Write;
use std::time::Duration;

use krust_agent::image::registry::Progress;

/// How often the bar is drawn again.
const REDRAW: Duration = Duration::from_millis(100);
/// The bar's width in characters.
const WIDTH: usize = 30;

/// One drawing of the bar: `IMAGE [=====>    ] 42% 1.2/2.9 MB`.
pub fn line(image: &str, total: u64, done: u64) -> String {
    if total == 0 {
        return format!("{image}: resolving");
    }
    let done = done.min(total);
    let filled = (done as u128 * WIDTH as u128 / total as u128) as usize;
    let head = if filled < WIDTH { ">" } else { "" };
    let bar = format!("{}{head}", "=".repeat(filled));
    let percent = done as u128 * 100 / total as u128;
    let mb = |n: u64| n as f64 / 1e6;
    format!("{image} [{bar:<WIDTH$}] {percent:>3}% {:.1}/{:.1} MB", mb(done), mb(total))
}

/// Draws `progress` on standard error every `REDRAW` until `pull` ends; returns its result.
pub async fn show<T>(image: &str, progress: &Progress, pull: impl Future<Output = T>) -> T {
    let draw = |last: bool| {
        let total = progress.total.load(std::sync::atomic::Ordering::Relaxed);
        let done = progress.done.load(std::sync::atomic::Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        let _ =
            write!(err, "\r\x1b[2K{}{}", line(image, total, done), if last { "\n" } else { "" });
        let _ = err.flush();
    };
    let mut pull = std::pin::pin!(pull);
    let mut ticks = tokio::time::interval(REDRAW);
    loop {
        tokio::select! {
            result = &mut pull => {
                draw(true);
                return result;
            }
            _ = ticks.tick() => draw(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_download() {
        assert_eq!(line("busybox", 0, 0), "busybox: resolving");
        assert_eq!(
            line("busybox", 2_000_000, 1_000_000),
            format!("busybox [{:<30}]  50% 1.0/2.0 MB", format!("{}>", "=".repeat(15)))
        );
        assert_eq!(
            line("busybox", 2_000_000, 2_000_000),
            format!("busybox [{}] 100% 2.0/2.0 MB", "=".repeat(30))
        );
    }
}

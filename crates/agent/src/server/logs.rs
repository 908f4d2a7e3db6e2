//! Container logs as `kubectl logs` shows them: CRI log lines (`TIME STREAM P|F TEXT`) read
//! back into the container's output, with upstream's options. Pure: the endpoint feeds it
//! the file's bytes.

use k8s_openapi::jiff::Timestamp;

/// The options of a log request (upstream's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new output until the container ends.
    pub follow: bool,
    /// The previous run's output instead of the current one's.
    pub previous: bool,
    /// Only lines at most this many seconds old.
    pub since_seconds: Option<i64>,
    /// Only lines from this time on.
    pub since_time: Option<Timestamp>,
    /// Each line prefixed with its RFC 3339 time.
    pub timestamps: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<i64>,
    /// At most this many bytes.
    pub limit_bytes: Option<i64>,
}

impl LogOptions {
    /// Reads the options from a query string; a malformed number is an error naming it.
    pub fn from_query(query: &str) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let number =
                |what: &str| value.parse::<i64>().map_err(|_| format!("invalid {what}: {value:?}"));
            match &*key {
                "follow" => options.follow = value == "true" || value == "1",
                "previous" => options.previous = value == "true" || value == "1",
                "timestamps" => options.timestamps = value == "true" || value == "1",
                "sinceSeconds" => options.since_seconds = Some(number("sinceSeconds")?),
                "tailLines" => options.tail_lines = Some(number("tailLines")?),
                "limitBytes" => options.limit_bytes = Some(number("limitBytes")?),
                "sinceTime" => {
                    options.since_time =
                        Some(value.parse().map_err(|_| format!("invalid sinceTime: {value:?}"))?)
                }
                _ => {}
            }
        }
        Ok(options)
    }

    /// The earliest time a line may have, if limited.
    pub fn since(&self, now: Timestamp) -> Option<Timestamp> {
        let by_seconds = self
            .since_seconds
            .and_then(|s| now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s)).ok());
        match (by_seconds, self.since_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One line of the container's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// When the runtime read its (last) part.
    pub time: String,
    /// The text, without its newline.
    pub text: Vec<u8>,
}

/// Parses the complete CRI lines at the start of `bytes` (partial `P` entries joined with
/// the entry that completes them); returns the lines and how many bytes they used.
pub fn parse(bytes: &[u8]) -> (Vec<Line>, usize) {
    let mut lines = Vec::new();
    let mut used = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut at = 0;
    while let Some(end) = bytes[at..].iter().position(|b| *b == b'\n') {
        let entry = &bytes[at..at + end];
        at += end + 1;
        let mut fields = entry.splitn(4, |b| *b == b' ');
        let (Some(time), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let text = fields.next().unwrap_or_default();
        pending.extend_from_slice(text);
        if tag == b"P" {
            continue;
        }
        lines.push(Line {
            time: String::from_utf8_lossy(time).into_owned(),
            text: std::mem::take(&mut pending),
        });
        used = at;
    }
    (lines, used)
}

/// Whether `line` is at or after `since`.
pub fn keep(line: &Line, since: Option<Timestamp>) -> bool {
    match since {
        None => true,
        Some(since) => line.time.parse::<Timestamp>().is_ok_and(|t| t >= since),
    }
}

/// The output of `lines` as the client sees it (with timestamps if asked).
pub fn render(lines: &[Line], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        if timestamps {
            out.extend_from_slice(line.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&line.text);
        out.push(b'\n');
    }
    out
}

/// The first part of a response: every kept line of `bytes`, the last `tailLines` of them if
/// asked. Returns the output and how many bytes of the file it used.
pub fn initial(bytes: &[u8], options: &LogOptions, now: Timestamp) -> (Vec<u8>, usize) {
    let (lines, used) = parse(bytes);
    let since = options.since(now);
    let mut kept: Vec<Line> = lines.into_iter().filter(|l| keep(l, since)).collect();
    if let Some(tail) = options.tail_lines {
        let tail = tail.max(0) as usize;
        if kept.len() > tail {
            kept.drain(..kept.len() - tail);
        }
    }
    (render(&kept, options.timestamps), used)
}

/// Lines of output a termination message takes from the log (upstream's
/// `MaxContainerTerminationMessageLogLines`).
pub const MESSAGE_LINES: usize = 80;
/// Bytes of output a termination message takes from the log (upstream's
/// `MaxContainerTerminationMessageLogLength`).
pub const MESSAGE_BYTES: usize = 2048;

/// The end of a container's output for its termination message (`FallbackToLogsOnError`):
/// its last `MESSAGE_LINES` lines, at most their last `MESSAGE_BYTES` bytes. `bytes` is the
/// log's end, read from `from_start` (then it starts at an entry) or from the middle of
/// one (the partial first entry is skipped).
pub fn message_tail(bytes: &[u8], from_start: bool) -> Vec<u8> {
    let bytes = match (from_start, bytes.iter().position(|b| *b == b'\n')) {
        (true, _) => bytes,
        (false, Some(end)) => &bytes[end + 1..],
        (false, None) => &[],
    };
    let (mut lines, _) = parse(bytes);
    if lines.len() > MESSAGE_LINES {
        lines.drain(..lines.len() - MESSAGE_LINES);
    }
    let mut out = render(&lines, false);
    if out.len() > MESSAGE_BYTES {
        out.drain(..out.len() - MESSAGE_BYTES);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2026-12-02T06:00:00.000000001Z stdout F one\n\
2026-12-02T06:00:01.000000000Z stderr F two\n\
2026-12-02T06:00:02.000000000Z stdout P thr\n\
2026-12-02T06:00:02.500000000Z stdout F ee\n\
2026-12-02T06:00:03.000000000Z stdout F fo";

    #[test]
    fn lines_are_joined_and_incomplete_ones_wait() {
        let (lines, used) = parse(LOG);
        let texts: Vec<&[u8]> = lines.iter().map(|l| l.text.as_slice()).collect();
        assert_eq!(texts, [b"one".as_slice(), b"two", b"three"]);
        assert_eq!(&LOG[used..], b"2026-12-02T06:00:03.000000000Z stdout F fo");
    }

    #[test]
    fn tail_since_and_timestamps() {
        let now: Timestamp = "2026-12-02T06:00:10Z".parse().expect("time");
        let all = initial(LOG, &LogOptions::default(), now).0;
        assert_eq!(all, b"one\ntwo\nthree\n");
        let tail = LogOptions { tail_lines: Some(1), timestamps: true, ..LogOptions::default() };
        assert_eq!(initial(LOG, &tail, now).0, b"2026-12-02T06:00:02.500000000Z three\n");
        let since = LogOptions { since_seconds: Some(9), ..LogOptions::default() };
        assert_eq!(initial(LOG, &since, now).0, b"two\nthree\n");
    }

    #[test]
    fn options_from_the_query() {
        let options = LogOptions::from_query(
            "follow=true&tailLines=5&sinceTime=2026-12-02T06%3A00%3A00Z&container=c",
        )
        .expect("options");
        assert!(options.follow && options.tail_lines == Some(5) && options.since_time.is_some());
        assert!(LogOptions::from_query("tailLines=x").is_err());
    }

    #[test]
    fn termination_messages_take_the_end_of_the_output() {
        assert_eq!(message_tail(LOG, true), b"one\ntwo\nthree\n");
        // Read from the middle of an entry: that entry is left out.
        assert_eq!(message_tail(&LOG[10..], false), b"two\nthree\n");
        let many: Vec<u8> = (0..200)
            .flat_map(|i| format!("2026-12-02T06:00:00Z stdout F line {i:03}\n").into_bytes())
            .collect();
        let tail = message_tail(&many, true);
        assert!(tail.starts_with(b"line 120\n") && tail.ends_with(b"line 199\n"));
        let long: Vec<u8> = format!("2026-12-02T06:00:00Z stdout F {}\n", "x".repeat(5000)).into();
        assert_eq!(message_tail(&long, true).len(), MESSAGE_BYTES);
    }
}

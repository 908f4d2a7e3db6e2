//! The comments of the protobuf schemas, as OpenAPI descriptions and markers.
//!
//! Encoded as text: every distinct description once, separated by `\x1e`, then `\x1d`, then
//! one record per commented message or field, separated by `\x1e`, of four units separated
//! by `\x1f`: the message's full name, the field's name (empty for the message itself), the
//! markers (`listType=map;listMapKey=name;optional`) and the index of the description.

use std::collections::HashMap;

use prost_types::{DescriptorProto, FileDescriptorProto, SourceCodeInfo};

/// The markers kept (those of `+name` or `+name=value` comment lines).
const MARKERS: &[&str] =
    &["listType", "listMapKey", "mapType", "structType", "optional", "required", "default"];

/// Descriptions and markers of every commented message and field.
#[derive(Default)]
pub struct Docs {
    texts: Vec<String>,
    index: HashMap<String, usize>,
    records: Vec<(String, String, String, usize)>,
}

impl Docs {
    /// Adds the messages of one file, with its source info.
    pub fn add_file(&mut self, file: &FileDescriptorProto, info: &SourceCodeInfo) {
        let comments: HashMap<&[i32], &str> = info
            .location
            .iter()
            .filter_map(|l| Some((l.path.as_slice(), l.leading_comments.as_deref()?)))
            .collect();
        let package = file.package.clone().unwrap_or_default();
        for (i, message) in file.message_type.iter().enumerate() {
            self.add_message(&package, message, vec![4, i as i32], &comments);
        }
    }

    fn add_message(
        &mut self,
        scope: &str,
        message: &DescriptorProto,
        path: Vec<i32>,
        comments: &HashMap<&[i32], &str>,
    ) {
        let name = format!("{scope}.{}", message.name.clone().unwrap_or_default());
        if let Some(comment) = comments.get(path.as_slice()) {
            self.add(&name, "", comment);
        }
        for (i, field) in message.field.iter().enumerate() {
            let mut at = path.clone();
            at.extend([2, i as i32]);
            if let Some(comment) = comments.get(at.as_slice()) {
                self.add(&name, field.name.as_deref().unwrap_or_default(), comment);
            }
        }
        for (i, nested) in message.nested_type.iter().enumerate() {
            let mut at = path.clone();
            at.extend([3, i as i32]);
            self.add_message(&name, nested, at, comments);
        }
    }

    fn add(&mut self, message: &str, field: &str, comment: &str) {
        let lines: Vec<&str> = comment.lines().map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
        let markers = markers(&lines);
        let text = description(&lines);
        if text.is_empty() && markers.is_empty() {
            return;
        }
        let next = self.texts.len();
        let index = *self.index.entry(text.clone()).or_insert(next);
        if index == next {
            self.texts.push(text);
        }
        self.records.push((message.to_string(), field.to_string(), markers, index));
    }

    /// The encoded form.
    pub fn encode(&self) -> String {
        let mut out = self.texts.join("\x1e");
        out.push('\x1d');
        let records: Vec<String> = self
            .records
            .iter()
            .map(|(m, f, markers, i)| format!("{m}\x1f{f}\x1f{markers}\x1f{i}"))
            .collect();
        out.push_str(&records.join("\x1e"));
        out
    }
}

/// The markers of a comment, `;`-separated.
fn markers(lines: &[&str]) -> String {
    let mut out = Vec::new();
    for line in lines {
        let Some(marker) = line.trim().strip_prefix('+') else { continue };
        let name = marker.split('=').next().unwrap_or_default();
        if MARKERS.contains(&name) {
            out.push(marker.trim().to_string());
        }
    }
    out.join(";")
}

/// The description upstream's OpenAPI generator writes for these comment lines
/// (`generateDescription` of kube-openapi): markers and one-line TODOs left out, paragraphs
/// kept, indented lines on lines of their own, everything else joined by spaces.
fn description(lines: &[&str]) -> String {
    let mut buffer = String::new();
    for line in lines {
        if *line == "---" {
            break;
        }
        let line = line.trim_end_matches(' ');
        let leading = line.trim_start_matches(' ');
        if line.is_empty() {
            buffer.pop();
            buffer.push_str("\n\n");
        } else if leading.starts_with("TODO") || leading.starts_with('+') {
        } else if line.starts_with(' ') || line.starts_with('\t') {
            buffer.pop();
            buffer.push('\n');
            buffer.push_str(line);
            buffer.push('\n');
        } else {
            buffer.push_str(line);
            buffer.push(' ');
        }
    }
    buffer.trim_matches('\n').replace("\\\"", "\"").trim_matches(' ').to_string()
}

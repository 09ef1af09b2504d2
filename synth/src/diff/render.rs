//! A [`Report`] as plain text for a terminal, or as Markdown for a pull-request comment.
//! Both list the stacks, resources, grants and entries in the report's (sorted) order.

use std::fmt::Write as _;

use super::iam::IamChange;
use super::resources::{Change, EntryDiff, PropertyChange, ResourceDiff};
use super::{Report, StackDiff, StackPresence, Update};

/// How to print a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Plain text for a terminal.
    #[default]
    Text,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// The report in `format`; empty for an empty report.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => report
            .stacks
            .iter()
            .map(text_stack)
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Markdown if report.is_empty() => String::new(),
        Format::Markdown => {
            let stacks: Vec<String> = report.stacks.iter().map(markdown_stack).collect();
            format!("## synth diff\n\n{}", stacks.join("\n"))
        }
    }
}

/// `2 added, 1 removed, 3 changed (1 replaced)`, or what a whole stack does.
fn summary(s: &StackDiff) -> String {
    let count = |c: Change| s.resources.iter().filter(|r| r.change == c).count();
    let (added, removed, changed) = (
        count(Change::Added),
        count(Change::Removed),
        count(Change::Changed),
    );
    let replaced = s
        .resources
        .iter()
        .filter(|r| r.update == Update::Replaces)
        .count();
    let resources = match s.presence {
        StackPresence::Added => format!("new stack, {added} resources"),
        StackPresence::Removed => format!("stack removed, {removed} resources"),
        StackPresence::Both => {
            let mut line = format!("{added} added, {removed} removed, {changed} changed");
            if replaced > 0 {
                let _ = write!(line, " ({replaced} replaced)");
            }
            line
        }
    };
    let iam = s.iam.len();
    if iam > 0 {
        let plural = if iam == 1 { "" } else { "s" };
        format!("{resources}, {iam} IAM change{plural}")
    } else {
        resources
    }
}

/// The stack's heading: `WsstackDev (wsstack-dev)`.
fn title(s: &StackDiff) -> String {
    match &s.stack_name {
        Some(name) => format!("{} ({name})", s.id),
        None => s.id.clone(),
    }
}

fn marker(c: Change) -> &'static str {
    match c {
        Change::Added => "+",
        Change::Removed => "-",
        Change::Changed => "~",
    }
}

/// What a change does to the resource, in words.
fn update_words(u: Update) -> &'static str {
    match u {
        Update::InPlace => "in place",
        Update::Unknown => "replacement unknown: the type is not in the table",
        Update::MayReplace => "may replace",
        Update::Replaces => "REPLACES",
    }
}

/// `Properties.MemorySize: 128 -> 256`, with `[replaces]` where it does.
fn change_line(c: &PropertyChange) -> String {
    let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
    let mut line = match &c.via {
        Some(via) => format!("{}: {} ({via} is replaced)", c.path, side(&c.new)),
        None => format!("{}: {} -> {}", c.path, side(&c.old), side(&c.new)),
    };
    if c.update > Update::InPlace {
        let _ = write!(line, "  [{}]", update_words(c.update).to_lowercase());
    }
    line
}

/// `AWS::SQS::Queue -> AWS::SNS::Topic` for a type change, else the type.
fn type_text(r: &ResourceDiff) -> String {
    match &r.old_type {
        Some(old) => format!("{old} -> {}", r.type_name),
        None => r.type_name.clone(),
    }
}

fn text_stack(s: &StackDiff) -> String {
    let mut out = format!("Stack {}: {}\n", title(s), summary(s));
    if !s.resources.is_empty() {
        out.push_str("Resources\n");
        for r in &s.resources {
            let _ = write!(
                out,
                "  [{}] {} {}",
                marker(r.change),
                r.logical_id,
                type_text(r)
            );
            if r.change == Change::Changed {
                let _ = write!(out, " ({})", update_words(r.update));
            }
            out.push('\n');
            for c in &r.changes {
                let _ = writeln!(out, "      {}", change_line(c));
            }
        }
    }
    if !s.iam.is_empty() {
        out.push_str("IAM\n");
        for c in &s.iam {
            let _ = writeln!(out, "  {}", iam_line(c));
        }
    }
    for (section, entries) in &s.sections {
        let _ = writeln!(out, "{section}");
        for e in entries {
            let _ = writeln!(out, "  [{}] {}", marker(e.change), e.name);
            for c in &e.changes {
                let _ = writeln!(out, "      {}", change_line(c));
            }
        }
    }
    out
}

/// `+ ConnectRole: dynamodb:PutItem on ${ConnectionsTable.Arn}`.
fn iam_line(c: &IamChange) -> String {
    format!("{} {}", if c.granted { "+" } else { "-" }, c.grant)
}

/// `text` as inline code, whatever backticks it holds.
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// Inline code fit for a table cell.
fn cell(text: &str) -> String {
    code(&text.replace('|', "\\|"))
}

fn markdown_stack(s: &StackDiff) -> String {
    let mut out = format!("### {}: {}\n\n", code(&title(s)), summary(s));
    if !s.resources.is_empty() {
        out.push_str("| | Resource | Type | Update |\n|---|---|---|---|\n");
        for r in &s.resources {
            let update = match (r.change, r.update) {
                (Change::Added, _) => "added".to_owned(),
                (Change::Removed, _) => "removed".to_owned(),
                (_, u @ (Update::Replaces | Update::MayReplace)) => {
                    format!("**{}**", update_words(u).to_lowercase())
                }
                (_, u) => update_words(u).to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {update} |",
                marker(r.change),
                cell(&r.logical_id),
                cell(&type_text(r))
            );
        }
        out.push('\n');
        markdown_changes(&mut out, s);
    }
    if !s.iam.is_empty() {
        out.push_str("**IAM**\n\n```diff\n");
        for c in &s.iam {
            let _ = writeln!(out, "{}", iam_line(c));
        }
        out.push_str("```\n\n");
    }
    for (section, entries) in &s.sections {
        markdown_entries(&mut out, section, entries);
    }
    out
}

/// The changed resources' property changes, one list item each.
fn markdown_changes(out: &mut String, s: &StackDiff) {
    let changed: Vec<&ResourceDiff> = s
        .resources
        .iter()
        .filter(|r| !r.changes.is_empty())
        .collect();
    if changed.is_empty() {
        return;
    }
    out.push_str("**Changes**\n\n");
    for r in changed {
        for c in &r.changes {
            let _ = writeln!(out, "- {} {}", code(&r.logical_id), markdown_change(c));
        }
    }
    out.push('\n');
}

/// `` `Properties.MemorySize`: `128` → `256` ``, with **replaces** where it does.
fn markdown_change(c: &PropertyChange) -> String {
    let side = |v: &Option<String>| v.as_deref().map_or_else(|| "(none)".to_owned(), code);
    let mut line = match &c.via {
        Some(via) => format!(
            "{}: {} ({} is replaced)",
            code(&c.path),
            side(&c.new),
            code(via)
        ),
        None => format!("{}: {} → {}", code(&c.path), side(&c.old), side(&c.new)),
    };
    if c.update > Update::InPlace {
        let _ = write!(line, " (**{}**)", update_words(c.update).to_lowercase());
    }
    line
}

fn markdown_entries(out: &mut String, section: &str, entries: &[EntryDiff]) {
    let _ = writeln!(out, "**{section}**\n");
    for e in entries {
        let what = match e.change {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        };
        let _ = writeln!(out, "- {what} {}", code(&e.name));
        for c in &e.changes {
            let _ = writeln!(out, "  - {}", markdown_change(c));
        }
    }
    out.push('\n');
}

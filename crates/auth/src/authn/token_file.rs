//! Static bearer tokens, read from upstream's token file (`--token-auth-file`): CSV lines of
//! `token,user,uid[,"group1,group2"]`.
//!
//! As upstream: at least three columns; a fourth holds the groups, comma-separated (quote it
//! when it has several); blank lines are skipped; a line with an empty token is skipped; a
//! token listed twice takes the later line. Parse errors name the line.

use std::collections::HashMap;

use crate::UserInfo;

/// Why a token file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    /// A line has fewer than three columns.
    #[error(
        "line {line}: the token file must have at least 3 columns (token, user name, user uid), found {found}"
    )]
    TooFewColumns {
        /// The line number, from 1.
        line: usize,
        /// How many columns it has.
        found: usize,
    },
    /// A quoted field is not closed, or a quote stands inside an unquoted field.
    #[error("line {line}: {problem}")]
    Quoting {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// The users of a token file, by token.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Parses the text of a token file.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_csv(raw, line)?;
            if fields.len() < 3 {
                return Err(TokenFileError::TooFewColumns { line, found: fields.len() });
            }
            if fields[0].is_empty() {
                continue;
            }
            let groups = match fields.get(3) {
                Some(groups) => groups.split(',').map(str::to_string).collect(),
                None => Vec::new(),
            };
            let user = UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                ..UserInfo::default()
            };
            tokens.insert(fields[0].clone(), user);
        }
        Ok(Self { tokens })
    }

    /// The user a token belongs to (without `system:authenticated`, which the chain adds).
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Splits one CSV line as Go's `encoding/csv` with `TrimLeadingSpace`: fields separated by
/// commas, optionally quoted (a doubled quote inside is one quote).
fn split_csv(line: &str, number: usize) -> Result<Vec<String>, TokenFileError> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(TokenFileError::Quoting {
                            line: number,
                            problem: "a quoted field is not closed",
                        });
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(TokenFileError::Quoting {
                        line: number,
                        problem: "extraneous text after a quoted field",
                    });
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => {
                        return Err(TokenFileError::Quoting {
                            line: number,
                            problem: "a quote inside an unquoted field",
                        });
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_user_uid_and_groups() {
        let file = TokenFile::parse(
            "abc,alice,1001\n\n  def , bob,1002,\"dev,ops\"\nxyz,carol,1003,solo\n",
        )
        .expect("parses");
        assert_eq!(file.len(), 3);
        let alice = file.authenticate("abc").expect("alice");
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1001"));
        assert!(alice.groups.is_empty());
        // Leading spaces are trimmed, trailing ones are not (as Go's csv reader).
        let bob = file.authenticate("def ").expect("bob");
        assert_eq!(bob.name, "bob");
        assert_eq!(bob.groups, ["dev", "ops"]);
        assert_eq!(file.authenticate("xyz").expect("carol").groups, ["solo"]);
        assert_eq!(file.authenticate("nope"), None);
    }

    #[test]
    fn a_line_with_too_few_columns_is_an_error_naming_the_line() {
        let err = TokenFile::parse("abc,alice,1\nshort,line\n").expect_err("refused");
        assert_eq!(err, TokenFileError::TooFewColumns { line: 2, found: 2 });
        assert!(err.to_string().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn an_unclosed_quote_is_an_error_naming_the_line() {
        let err = TokenFile::parse("a,b,c\n\nt,u,1,\"dev\n").expect_err("refused");
        assert!(matches!(err, TokenFileError::Quoting { line: 3, .. }), "{err:?}");
    }

    #[test]
    fn empty_tokens_are_skipped_and_later_duplicates_win() {
        let file = TokenFile::parse(",ghost,0\nt,first,1\nt,second,2\n").expect("parses");
        assert_eq!(file.len(), 1);
        assert_eq!(file.authenticate("t").expect("user").name, "second");
        assert_eq!(file.authenticate(""), None);
    }

    #[test]
    fn doubled_quotes_inside_a_quoted_field_are_one_quote() {
        let file = TokenFile::parse("\"to\"\"ken\",u,1\n").expect("parses");
        assert!(file.authenticate("to\"ken").is_some());
    }
}

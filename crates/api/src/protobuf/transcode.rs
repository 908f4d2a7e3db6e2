//! An object's JSON text written as its protobuf message, in one pass over the text: the
//! JSON is read by `serde_json` and each member written as the field its message's
//! [`MessagePlan`] names, with no `serde_json::Value` in between (a list or a watch serves
//! objects that are kept as JSON text; building a `Value` of each cost more than encoding it).
//!
//! The output is what upstream's Go code writes (see [`super::encode`]): fields in
//! field-number order and map entries sorted by key. JSON members come in any order, so each
//! member's bytes are written where they come, noted as an [`Entry`], and a message whose
//! members did not come in field order (or that has inlined messages) is put in order when
//! it ends, by copying its entries once. JSON written by Go, or by this server from it, is
//! mostly in field order already.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::plan::{Field, MessagePlan, Plans, Scalar, Shape, SpecialFields, Value};
use super::wire::{self, LEN};

/// Why a value could not be encoded, and where it is.
#[derive(Debug)]
pub struct Failure {
    /// What is wrong with the value.
    pub message: String,
    /// The value's path, innermost segment first (`[0]`, `containers`, `spec`).
    pub path: Vec<String>,
}

impl Failure {
    /// A failure of the value being encoded.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), path: Vec::new() }
    }

    /// The same failure, seen from the member or index `segment` of the enclosing value.
    pub fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    /// The message with the path in front (`spec.containers[0].image: ...`).
    pub fn describe(self) -> String {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        if path.is_empty() { self.message } else { format!("{path}: {}", self.message) }
    }
}

/// Appends the fields of message `plan` (by id) for `json`, an object's JSON text, to `out`.
pub fn transcode(
    plans: &Plans,
    plan: usize,
    json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    let mut state = State { plans, out, entries: Vec::new(), scratch: Vec::new(), failure: None };
    let mut reader = serde_json::Deserializer::from_slice(json);
    let read =
        de::Deserializer::deserialize_any(&mut reader, MessageVisitor { state: &mut state, plan })
            .and_then(|()| reader.end());
    match read {
        Ok(()) => Ok(()),
        Err(e) => {
            Err(state.failure.take().unwrap_or_else(|| Failure::new(format!("invalid JSON: {e}"))))
        }
    }
}

/// One member's bytes, written where the member came in the JSON.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its field number.
    number: u32,
    /// The inlined group it belongs to (0: the message itself).
    group: u8,
    /// Where its bytes start in the output.
    start: usize,
    /// Where they end.
    end: usize,
}

/// What the walk over one object holds.
struct State<'p, 'o> {
    /// The compiled messages.
    plans: &'p Plans,
    /// The bytes written.
    out: &'o mut Vec<u8>,
    /// The entries of the messages being written, innermost last.
    entries: Vec<Entry>,
    /// Room for putting a message in order.
    scratch: Vec<u8>,
    /// Why the walk stopped, when a value (not the JSON) was wrong; the reader's error is
    /// then only a way out.
    failure: Option<Failure>,
}

impl State<'_, '_> {
    /// Stops the walk for `failure`.
    fn fail<E: de::Error>(&mut self, failure: Failure) -> E {
        self.failure = Some(failure);
        E::custom("an invalid value")
    }

    /// Adds `segment` to the path of the failure that `result` carries, if any.
    fn at<T, E>(&mut self, result: Result<T, E>, segment: impl FnOnce() -> String) -> Result<T, E> {
        if result.is_err()
            && let Some(failure) = self.failure.take()
        {
            self.failure = Some(failure.at(segment()));
        }
        result
    }

    /// Puts the entries from `first` of the message whose bytes start at `start` in field
    /// order, with its inlined groups (`plan.groups`) each written as one field, then drops
    /// them.
    fn finish_message(&mut self, plan: &MessagePlan, first: usize, start: usize) {
        let entries = &mut self.entries[first..];
        let ordered = entries.windows(2).all(|pair| pair[0].number <= pair[1].number);
        if plan.groups.is_empty() && ordered {
            self.entries.truncate(first);
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.out[start..]);
        self.out.truncate(start);
        // A stable sort keeps a repeated field's and a map's bytes as they were put.
        entries.sort_by_key(|entry| entry.number);
        emit_group(self.out, &self.scratch, start, entries, plan, 0);
        self.entries.truncate(first);
    }
}

/// Writes group `group` of a message: its entries (sorted, relative to `base` in `written`)
/// and its inlined groups, in field-number order.
fn emit_group(
    out: &mut Vec<u8>,
    written: &[u8],
    base: usize,
    entries: &[Entry],
    plan: &MessagePlan,
    group: u8,
) {
    let mut own = entries.iter().filter(|e| e.group == group).peekable();
    let mut inner: Vec<(u32, u8)> = (1..=plan.groups.len())
        .filter(|&g| plan.groups[g - 1].parent == group)
        .map(|g| (plan.groups[g - 1].number, g as u8))
        .collect();
    inner.sort_unstable();
    let mut inner = inner.into_iter().peekable();
    loop {
        let next_entry = own.peek().map(|e| e.number);
        let next_group = inner.peek().map(|(number, _)| *number);
        match (next_entry, next_group) {
            (None, None) => return,
            (Some(e), g) if g.is_none_or(|g| e <= g) => {
                let Some(entry) = own.next() else { return };
                out.extend_from_slice(&written[entry.start - base..entry.end - base]);
            }
            _ => {
                let Some((number, inlined)) = inner.next() else { return };
                wire::tag(out, number, LEN);
                let start = wire::open(out);
                emit_group(out, written, base, entries, plan, inlined);
                wire::close(out, start);
            }
        }
    }
}

/// A scalar JSON value.
#[derive(Debug)]
enum Token<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
}

impl Token<'_> {
    /// What a JSON value of this token is, for errors.
    fn found(&self) -> &'static str {
        match self {
            Token::Null => "null",
            Token::Bool(_) => "a boolean",
            Token::Int(_) | Token::Float(_) => "a number",
            Token::Str(_) => "a string",
        }
    }
}

/// The failure of a value that is not `expected`.
fn mismatch(expected: &str, found: &str) -> Failure {
    Failure::new(format!("expected {expected}, found {found}"))
}

/// What a `null` means where a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Null {
    /// An unset member: nothing is written (but a time or raw JSON is an empty message).
    Unset,
    /// An element of a list or a map: the zero value.
    Zero,
}

/// Reads a JSON object as the fields of message `plan` (no tag or length).
struct MessageVisitor<'s, 'p, 'o> {
    state: &'s mut State<'p, 'o>,
    plan: usize,
}

impl<'de> Visitor<'de> for MessageVisitor<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        members(self.state, self.plan, map)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.state.fail(Failure::new("the object is not a JSON object")))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.visit_unit()
    }
}

/// Writes the members of `map` as the fields of message `plan`, in field-number order.
fn members<'de, A: MapAccess<'de>>(
    state: &mut State<'_, '_>,
    plan: usize,
    mut map: A,
) -> Result<(), A::Error> {
    let plans = state.plans;
    let plan = plans.get(plan);
    let (first, start) = (state.entries.len(), state.out.len());
    while let Some(key) = map.next_key_seed(Key)? {
        let Some((group, field)) = plan.member(&key) else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        let begin = state.out.len();
        let read = map.next_value_seed(Member { state: &mut *state, field });
        state.at(read, || key.into_owned())?;
        let end = state.out.len();
        if end > begin {
            state.entries.push(Entry { number: field.number, group, start: begin, end });
        }
    }
    state.finish_message(plan, first, start);
    Ok(())
}

/// A member's name, borrowed from the JSON when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// The value of a member that fills `field`.
struct Member<'s, 'p, 'o, 'f> {
    state: &'s mut State<'p, 'o>,
    field: &'f Field,
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let Member { state, field } = self;
        match field.shape {
            Shape::Single => {
                ValueSeed { state, number: field.number, value: &field.value, null: Null::Unset }
                    .deserialize(d)
            }
            shape => d.deserialize_any(Collection { state, field, shape }),
        }
    }
}

/// A list or a map member.
struct Collection<'s, 'p, 'o, 'f> {
    state: &'s mut State<'p, 'o>,
    field: &'f Field,
    shape: Shape,
}

impl Collection<'_, '_, '_, '_> {
    /// The failure of a JSON value that is neither this collection nor `null`.
    fn wrong<E: de::Error>(self, found: &str) -> E {
        let expected = if matches!(self.shape, Shape::Map(_)) { "an object" } else { "an array" };
        self.state.fail(mismatch(expected, found))
    }
}

impl<'de> Visitor<'de> for Collection<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array or an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.wrong("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.wrong("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.wrong("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        match self.shape {
            Shape::Repeated => repeated(self.state, self.field, seq),
            Shape::Packed => packed(self.state, self.field, seq),
            _ => Err(self.wrong("an array")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        match self.shape {
            Shape::Map(key) => entries(self.state, self.field, key, map),
            _ => Err(self.wrong("an object")),
        }
    }
}

/// Writes each element of `seq` as one occurrence of `field`.
fn repeated<'de, A: SeqAccess<'de>>(
    state: &mut State<'_, '_>,
    field: &Field,
    mut seq: A,
) -> Result<(), A::Error> {
    let mut index = 0;
    loop {
        let seed = ValueSeed {
            state: &mut *state,
            number: field.number,
            value: &field.value,
            null: Null::Zero,
        };
        let read = seq.next_element_seed(seed);
        match state.at(read, || format!("[{index}]"))? {
            Some(()) => index += 1,
            None => return Ok(()),
        }
    }
}

/// Writes the elements of `seq`, scalars, as one packed run of `field`.
fn packed<'de, A: SeqAccess<'de>>(
    state: &mut State<'_, '_>,
    field: &Field,
    mut seq: A,
) -> Result<(), A::Error> {
    let Value::Scalar(scalar) = field.value else {
        return Err(state.fail(Failure::new("a packed field of messages")));
    };
    let before = state.out.len();
    wire::tag(state.out, field.number, LEN);
    let start = wire::open(state.out);
    let mut index = 0;
    loop {
        let read = seq.next_element_seed(ScalarSeed { state: &mut *state, scalar });
        match state.at(read, || format!("[{index}]"))? {
            Some(()) => index += 1,
            None => break,
        }
    }
    if index == 0 {
        state.out.truncate(before);
    } else {
        wire::close(state.out, start);
    }
    Ok(())
}

/// How a map entry sorts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EntryKey {
    /// A string key, by where its bytes are in the output.
    Text(usize, usize),
    /// A number or boolean key.
    Number(i128),
}

/// Writes the members of `map` as entries of map field `field`, sorted by key as Go sorts
/// them.
fn entries<'de, A: MapAccess<'de>>(
    state: &mut State<'_, '_>,
    field: &Field,
    key_type: Scalar,
    mut map: A,
) -> Result<(), A::Error> {
    let start = state.out.len();
    let mut written: Vec<(EntryKey, usize, usize)> = Vec::new();
    while let Some(key) = map.next_key_seed(Key)? {
        let begin = state.out.len();
        wire::tag(state.out, field.number, LEN);
        let content = wire::open(state.out);
        let sort = match key_type {
            Scalar::String => {
                wire::tag(state.out, 1, LEN);
                wire::varint(state.out, key.len() as u64);
                let at = state.out.len();
                state.out.extend_from_slice(key.as_bytes());
                EntryKey::Text(at, at + key.len())
            }
            Scalar::Bool => {
                let on = &*key == "true";
                wire::tag(state.out, 1, key_type.wire_type());
                wire::varint(state.out, u64::from(on));
                EntryKey::Number(i128::from(on))
            }
            _ => {
                let number = key.parse::<i128>().map_err(|_| {
                    state.fail(Failure::new(format!("map key {key:?} is not a number")).at(&*key))
                })?;
                wire::tag(state.out, 1, key_type.wire_type());
                let write = write_scalar(state.out, key_type, &Token::Int(number));
                write.map_err(|f| state.fail(f.at(&*key)))?;
                EntryKey::Number(number)
            }
        };
        let seed =
            ValueSeed { state: &mut *state, number: 2, value: &field.value, null: Null::Zero };
        let read = map.next_value_seed(seed);
        state.at(read, || key.into_owned())?;
        let open_end = state.out.len();
        wire::close(state.out, content);
        // A long entry's content moved up for its length: so did its key.
        let moved = state.out.len() - open_end;
        let sort = match sort {
            EntryKey::Text(from, to) => EntryKey::Text(from + moved, to + moved),
            number => number,
        };
        written.push((sort, begin, state.out.len()));
    }
    let out = &*state.out;
    let text = |key: &EntryKey| match key {
        EntryKey::Text(from, to) => Some(&out[*from..*to]),
        EntryKey::Number(_) => None,
    };
    let ordered = written.windows(2).all(|pair| match (text(&pair[0].0), text(&pair[1].0)) {
        (Some(a), Some(b)) => a <= b,
        _ => pair[0].0 <= pair[1].0,
    });
    if ordered {
        return Ok(());
    }
    written.sort_by(|a, b| match (text(&a.0), text(&b.0)) {
        (Some(x), Some(y)) => x.cmp(y),
        _ => a.0.cmp(&b.0),
    });
    state.scratch.clear();
    state.scratch.extend_from_slice(&state.out[start..]);
    state.out.truncate(start);
    for (_, from, to) in written {
        state.out.extend_from_slice(&state.scratch[from - start..to - start]);
    }
    Ok(())
}

/// The scalar `visit_*` methods of a visitor that writes scalars through its `token` method,
/// each handing it the JSON value as a [`Token`].
macro_rules! scalar_tokens {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.token(Token::Null)
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
            self.token(Token::Bool(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
            self.token(Token::Int(v.into()))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
            self.token(Token::Int(v.into()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
            self.token(Token::Float(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            self.token(Token::Str(Cow::Borrowed(v)))
        }
    };
}

/// One value of field `number` (a member, a list element, a map value), with its tag.
struct ValueSeed<'s, 'p, 'o, 'v> {
    state: &'s mut State<'p, 'o>,
    number: u32,
    value: &'v Value,
    null: Null,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Value::Message(id) = self.value
            && let Some(SpecialFields::RawJson { raw }) = self.state.plans.get(*id).special
        {
            return raw_json(self.state, self.number, raw, d);
        }
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_, '_, '_, '_> {
    /// Writes a scalar JSON value.
    fn token<E: de::Error>(self, token: Token<'_>) -> Result<(), E> {
        let ValueSeed { state, number, value, null } = self;
        let written = match value {
            Value::Scalar(scalar) => {
                if matches!(token, Token::Null) && null == Null::Unset {
                    return Ok(());
                }
                wire::tag(state.out, number, scalar.wire_type());
                write_scalar(state.out, *scalar, &token)
            }
            Value::Enum(values) => {
                if matches!(token, Token::Null) && null == Null::Unset {
                    return Ok(());
                }
                wire::tag(state.out, number, Scalar::Int32.wire_type());
                write_enum(state.out, values, &token)
            }
            Value::Message(id) => {
                let plan = state.plans.get(*id);
                match plan.special {
                    Some(special) => {
                        if matches!(token, Token::Null) && null == Null::Unset {
                            // Go writes a zero time as an empty message; any other unset
                            // member is left out.
                            if matches!(special, SpecialFields::Time { .. }) {
                                wire::tag(state.out, number, LEN);
                                wire::varint(state.out, 0);
                            }
                            return Ok(());
                        }
                        wire::tag(state.out, number, LEN);
                        let start = wire::open(state.out);
                        let written = write_special(state.out, special, &token);
                        wire::close(state.out, start);
                        written
                    }
                    None => match token {
                        Token::Null => {
                            if null == Null::Zero {
                                wire::tag(state.out, number, LEN);
                                wire::varint(state.out, 0);
                            }
                            Ok(())
                        }
                        other => Err(mismatch("an object", other.found())),
                    },
                }
            }
        };
        written.map_err(|failure| state.fail(failure))
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar_tokens!();

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let ValueSeed { state, number, value, .. } = self;
        let Value::Message(id) = value else {
            return Err(state.fail(mismatch(expected(state.plans, value), "an object")));
        };
        if let Some(special) = state.plans.get(*id).special {
            return Err(state.fail(mismatch(special.expected(), "an object")));
        }
        wire::tag(state.out, number, LEN);
        let start = wire::open(state.out);
        members(state, *id, map)?;
        wire::close(state.out, start);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed { state, number, value, .. } = self;
        let special = match value {
            Value::Message(id) => state.plans.get(*id).special,
            _ => None,
        };
        let Some(SpecialFields::StringList { items }) = special else {
            return Err(state.fail(mismatch(expected(state.plans, value), "an array")));
        };
        wire::tag(state.out, number, LEN);
        let start = wire::open(state.out);
        let mut index = 0;
        loop {
            let item = ValueSeed {
                state: &mut *state,
                number: items,
                value: &Value::Scalar(Scalar::String),
                null: Null::Zero,
            };
            let read = seq.next_element_seed(item);
            match state.at(read, || format!("[{index}]"))? {
                Some(()) => index += 1,
                None => break,
            }
        }
        wire::close(state.out, start);
        Ok(())
    }
}

/// What the JSON form of `value` is, for errors.
fn expected(plans: &Plans, value: &Value) -> &'static str {
    match value {
        Value::Scalar(Scalar::String) => "a string",
        Value::Scalar(Scalar::Bytes) => "a base64 string",
        Value::Scalar(Scalar::Bool) => "a boolean",
        Value::Scalar(Scalar::Float | Scalar::Double) => "a number",
        Value::Scalar(_) | Value::Enum(_) => "an integer",
        Value::Message(id) => plans.get(*id).special.map_or("an object", SpecialFields::expected),
    }
}

impl SpecialFields {
    /// What its JSON form is, for errors.
    fn expected(self) -> &'static str {
        match self {
            SpecialFields::Time { .. } => "an RFC 3339 time",
            SpecialFields::Duration { .. } => "a duration string",
            SpecialFields::IntOrString { .. } => "an integer or a string",
            SpecialFields::Quantity { .. } => "a quantity",
            SpecialFields::RawJson { .. } => "JSON",
            SpecialFields::StringList { .. } => "an array of strings",
        }
    }
}

/// A scalar list element of a packed run (no tag).
struct ScalarSeed<'s, 'p, 'o> {
    state: &'s mut State<'p, 'o>,
    scalar: Scalar,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ScalarSeed<'_, '_, '_> {
    fn token<E: de::Error>(self, token: Token<'_>) -> Result<(), E> {
        write_scalar(self.state.out, self.scalar, &token).map_err(|f| self.state.fail(f))
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar")
    }

    scalar_tokens!();

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.state.fail(mismatch("a scalar", "an array")))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.state.fail(mismatch("a scalar", "an object")))
    }
}

/// Writes a raw JSON value (`RawExtension`, `FieldsV1`) of field `number` as the bytes of
/// its JSON in field `raw`: `null` is an empty message (Go's empty extension).
fn raw_json<'de, D: de::Deserializer<'de>>(
    state: &mut State<'_, '_>,
    number: u32,
    raw: u32,
    d: D,
) -> Result<(), D::Error> {
    let mut json = Vec::new();
    d.deserialize_any(Rewrite { out: &mut json })?;
    wire::tag(state.out, number, LEN);
    if json == b"null" {
        wire::varint(state.out, 0);
        return Ok(());
    }
    let start = wire::open(state.out);
    wire::tag(state.out, raw, LEN);
    wire::bytes(state.out, &json);
    wire::close(state.out, start);
    Ok(())
}

/// A JSON value written again, compact, as `serde_json` writes it.
struct Rewrite<'o> {
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Rewrite<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Rewrite<'_> {
    fn put<T: serde::Serialize + ?Sized, E: de::Error>(self, value: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, value).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Rewrite<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.put(&v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.put(&serde_json::Number::from_f64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.put(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq.next_element_seed(Rewrite { out: &mut *self.out })?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key_seed(Key)? {
            if !std::mem::take(&mut first) {
                self.out.push(b',');
            }
            serde_json::to_writer(&mut *self.out, &*key).map_err(de::Error::custom)?;
            self.out.push(b':');
            map.next_value_seed(Rewrite { out: &mut *self.out })?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// Writes the value of a scalar (without its tag); `null` is the zero value.
fn write_scalar(out: &mut Vec<u8>, scalar: Scalar, token: &Token<'_>) -> Result<(), Failure> {
    match scalar {
        Scalar::String => match token {
            Token::Str(text) => wire::bytes(out, text.as_bytes()),
            Token::Null => wire::bytes(out, b""),
            other => return Err(mismatch("a string", other.found())),
        },
        Scalar::Bytes => match token {
            Token::Str(text) => {
                let data = BASE64
                    .decode(text.as_bytes())
                    .map_err(|e| Failure::new(format!("invalid base64 data: {e}")))?;
                wire::bytes(out, &data);
            }
            Token::Null => wire::bytes(out, b""),
            other => return Err(mismatch("a base64 string", other.found())),
        },
        Scalar::Bool => match token {
            Token::Bool(b) => wire::varint(out, u64::from(*b)),
            Token::Null => wire::varint(out, 0),
            other => return Err(mismatch("a boolean", other.found())),
        },
        Scalar::Int32 => {
            wire::varint(out, integer(token, i32::MIN.into(), i32::MAX.into())? as i64 as u64)
        }
        Scalar::Int64 => {
            wire::varint(out, integer(token, i64::MIN.into(), i64::MAX.into())? as i64 as u64)
        }
        Scalar::Uint32 => wire::varint(out, integer(token, 0, u32::MAX.into())? as u64),
        Scalar::Uint64 => wire::varint(out, integer(token, 0, u64::MAX.into())? as u64),
        Scalar::Sint32 => {
            let n = integer(token, i32::MIN.into(), i32::MAX.into())? as i32;
            wire::varint(out, u64::from(((n << 1) ^ (n >> 31)) as u32));
        }
        Scalar::Sint64 => {
            let n = integer(token, i64::MIN.into(), i64::MAX.into())? as i64;
            wire::varint(out, ((n << 1) ^ (n >> 63)) as u64);
        }
        Scalar::Fixed32 => {
            out.extend_from_slice(&(integer(token, 0, u32::MAX.into())? as u32).to_le_bytes());
        }
        Scalar::Sfixed32 => {
            let n = integer(token, i32::MIN.into(), i32::MAX.into())? as i32;
            out.extend_from_slice(&n.to_le_bytes());
        }
        Scalar::Fixed64 => {
            out.extend_from_slice(&(integer(token, 0, u64::MAX.into())? as u64).to_le_bytes());
        }
        Scalar::Sfixed64 => {
            let n = integer(token, i64::MIN.into(), i64::MAX.into())? as i64;
            out.extend_from_slice(&n.to_le_bytes());
        }
        Scalar::Float => out.extend_from_slice(&(float(token)? as f32).to_le_bytes()),
        Scalar::Double => out.extend_from_slice(&float(token)?.to_le_bytes()),
    }
    Ok(())
}

/// Writes an enum's number, given by name or number.
fn write_enum(
    out: &mut Vec<u8>,
    values: &[(Box<str>, i32)],
    token: &Token<'_>,
) -> Result<(), Failure> {
    let number = match token {
        Token::Str(name) => values
            .iter()
            .find(|(value, _)| **value == **name)
            .map(|(_, number)| *number)
            .ok_or_else(|| Failure::new(format!("unknown enum value {name:?}")))?,
        other => integer(other, i32::MIN.into(), i32::MAX.into())? as i32,
    };
    wire::varint(out, number as i64 as u64);
    Ok(())
}

/// An integer within `min..=max` (`null` is 0).
fn integer(token: &Token<'_>, min: i128, max: i128) -> Result<i128, Failure> {
    let n = match token {
        Token::Null => return Ok(0),
        Token::Int(n) => *n,
        other => return Err(mismatch("an integer", other.found())),
    };
    if n < min || n > max {
        return Err(Failure::new(format!("{n} is out of range")));
    }
    Ok(n)
}

/// A number (`null` is 0).
fn float(token: &Token<'_>) -> Result<f64, Failure> {
    match token {
        Token::Null => Ok(0.0),
        Token::Int(n) => Ok(*n as f64),
        Token::Float(n) => Ok(*n),
        other => Err(mismatch("a number", other.found())),
    }
}

/// Writes the fields of a special form for its JSON value `token` (inside the message's
/// length): `null` writes what Go writes for the zero value.
fn write_special(
    out: &mut Vec<u8>,
    special: SpecialFields,
    token: &Token<'_>,
) -> Result<(), Failure> {
    let put = |out: &mut Vec<u8>, (number, scalar): (u32, Scalar), token: &Token<'_>| {
        wire::tag(out, number, scalar.wire_type());
        write_scalar(out, scalar, token)
    };
    match special {
        SpecialFields::Time { seconds, nanos, micro } => {
            let text = match token {
                Token::Null => return Ok(()),
                Token::Str(text) => text,
                other => return Err(mismatch("an RFC 3339 time", other.found())),
            };
            let Some((s, n)) = timestamp(text, micro)? else { return Ok(()) };
            put(out, seconds, &Token::Int(s.into()))?;
            put(out, nanos, &Token::Int(n.into()))
        }
        SpecialFields::Duration { duration } => match token {
            Token::Null => Ok(()),
            Token::Str(text) => {
                let nanos = super::encode::parse_go_duration(text).map_err(Failure::new)?;
                put(out, duration, &Token::Int(nanos.into()))
            }
            other => Err(mismatch("a duration string", other.found())),
        },
        SpecialFields::IntOrString { kind, int, text } => {
            // Go writes all three fields: the type, a number (0 for a string) and a string
            // (empty for a number).
            let empty = Token::Str(Cow::Borrowed(""));
            let (type_of, number, string) = match token {
                Token::Str(_) => (1, &Token::Int(0), token),
                Token::Null => (0, &Token::Int(0), &empty),
                number @ (Token::Int(_) | Token::Float(_)) => (0, number, &empty),
                other => return Err(mismatch("an integer or a string", other.found())),
            };
            put(out, kind, &Token::Int(type_of))?;
            put(out, int, number)?;
            put(out, text, string)
        }
        SpecialFields::Quantity { string } => {
            let text = match token {
                Token::Null => return Ok(()),
                Token::Str(text) => text.clone(),
                Token::Int(n) => Cow::Owned(n.to_string()),
                Token::Float(n) => Cow::Owned(
                    serde_json::Number::from_f64(*n)
                        .map_or_else(|| n.to_string(), |n| n.to_string()),
                ),
                other => return Err(mismatch("a quantity", other.found())),
            };
            put(out, (string, Scalar::String), &Token::Str(text))
        }
        // Read by `raw_json`, which sees the whole value.
        SpecialFields::RawJson { .. } => Ok(()),
        SpecialFields::StringList { .. } => match token {
            Token::Null => Ok(()),
            other => Err(mismatch("an array of strings", other.found())),
        },
    }
}

/// The seconds and nanoseconds of an RFC 3339 time, as Go's `ProtoTime` gives them: whole
/// seconds for a `Time`, microseconds for a `MicroTime`; `None` for Go's zero time, which Go
/// writes as an empty message.
fn timestamp(text: &str, micro: bool) -> Result<Option<(i64, i64)>, Failure> {
    /// `0001-01-01T00:00:00Z`, Go's zero time, in Unix seconds.
    const GO_ZERO: i64 = -62_135_596_800;
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|e| Failure::new(format!("invalid time {text:?}: {e}")))?;
    let (seconds, nanos) = (time.timestamp(), i64::from(time.timestamp_subsec_nanos()));
    if seconds == GO_ZERO && nanos == 0 {
        return Ok(None);
    }
    Ok(Some((seconds, if micro { nanos / 1_000 * 1_000 } else { 0 })))
}

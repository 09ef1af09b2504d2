//! The `[lambda]` section of a stage file: defaults for every function, and a
//! `[lambda.<handler>]` table per handler that overrides them for one function.
//!
//! The handler tables follow from the route table: exactly the names of
//! [`wsstack_routes::Handler::ALL`] are accepted, so a new handler needs no edit here. Any other
//! key is an error naming it, its line, and what is allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use wsstack_routes::Handler;

use super::{
    Architecture, BroadcastConcurrency, LogLevel, MemoryMb, ReservedConcurrency, RetentionDays,
    TimeoutSeconds,
};

/// Declares [`FunctionFields`] with its field list spelled once: the struct, the key names and
/// the merge all follow from it.
macro_rules! function_fields {
    ($($field:ident: $ty:ty),* $(,)?) => {
        /// One function's settings as a stage file gives them: each optional.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields, expecting = "a table of function settings")]
        pub(super) struct FunctionFields {
            $(pub(super) $field: Option<$ty>,)*
        }

        impl FunctionFields {
            /// The keys of a function's settings.
            pub(super) const NAMES: &[&str] = &[$(stringify!($field)),*];

            /// `self`'s values, and `other`'s where `self` has none.
            pub(super) fn or(self, other: FunctionFields) -> FunctionFields {
                FunctionFields {
                    $($field: self.$field.or(other.$field),)*
                }
            }
        }
    };
}

function_fields! {
    memory_mb: MemoryMb,
    timeout_seconds: toml::Spanned<TimeoutSeconds>,
    architecture: Architecture,
    log_level: LogLevel,
    log_retention_days: RetentionDays,
    reserved_concurrency: toml::Spanned<ReservedConcurrency>,
    broadcast_concurrency: BroadcastConcurrency,
}

/// `[lambda]`: the defaults, and the overrides per handler.
#[derive(Debug, Default)]
pub(super) struct LambdaSection {
    pub(super) defaults: FunctionFields,
    pub(super) handlers: BTreeMap<Handler, FunctionFields>,
}

impl LambdaSection {
    /// What the stage file says for one handler's function: its table, then `[lambda]`.
    pub(super) fn fields(&self, handler: Handler) -> FunctionFields {
        self.handlers
            .get(&handler)
            .cloned()
            .unwrap_or_default()
            .or(self.defaults.clone())
    }
}

/// Picks one spanned setting out of a function's fields.
pub(super) type Pick<T> = fn(&FunctionFields) -> Option<&toml::Spanned<T>>;

impl LambdaSection {
    /// Where the stage file sets one handler's setting: the dotted field and the value's span,
    /// from the handler's own table or else from `[lambda]`; `None` when it is the default.
    pub(super) fn origin<T>(
        &self,
        handler: Handler,
        name: &str,
        pick: Pick<T>,
    ) -> Option<(String, Range<usize>)> {
        if let Some(v) = self.handlers.get(&handler).and_then(pick) {
            return Some((format!("lambda.{}.{name}", handler.name()), v.span()));
        }
        pick(&self.defaults).map(|v| (format!("lambda.{name}"), v.span()))
    }
}

/// A key of `[lambda]`: a function setting or a handler's table.
enum LambdaKey {
    Setting(String),
    Handler(Handler),
}

/// Reads a `[lambda]` key, rejecting what is neither a setting nor a handler. Deserializing the
/// key (not the value) lets the TOML deserializer point the error at the key.
struct LambdaKeySeed;

impl<'de> DeserializeSeed<'de> for LambdaKeySeed {
    type Value = LambdaKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<LambdaKey, D::Error> {
        let key = String::deserialize(d)?;
        if let Some(h) = Handler::from_name(&key) {
            return Ok(LambdaKey::Handler(h));
        }
        if FunctionFields::NAMES.contains(&key.as_str()) {
            return Ok(LambdaKey::Setting(key));
        }
        let handlers: Vec<&str> = Handler::names().collect();
        Err(de::Error::custom(format!(
            "unknown key `{key}`: [lambda] takes the settings {} and a [lambda.<handler>] table per handler, one of {}",
            FunctionFields::NAMES.join(", "),
            handlers.join(", ")
        )))
    }
}

impl<'de> Deserialize<'de> for LambdaSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LambdaVisitor)
    }
}

struct LambdaVisitor;

impl<'de> Visitor<'de> for LambdaVisitor {
    type Value = LambdaSection;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a [lambda] table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LambdaSection, A::Error> {
        let mut section = LambdaSection::default();
        while let Some(key) = map.next_key_seed(LambdaKeySeed)? {
            match key {
                LambdaKey::Handler(h) => {
                    let fields = map.next_value::<FunctionFields>()?;
                    section.handlers.insert(h, fields);
                }
                LambdaKey::Setting(name) => {
                    let one = map.next_value_seed(OneSetting(&name))?;
                    section.defaults = one.or(std::mem::take(&mut section.defaults));
                }
            }
        }
        Ok(section)
    }
}

/// Deserializes one `[lambda]` setting as a [`FunctionFields`] with only that field, so the
/// settings' types and checks are declared once, in [`FunctionFields`].
struct OneSetting<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for OneSetting<'_> {
    type Value = FunctionFields;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FunctionFields, D::Error> {
        FunctionFields::deserialize(OneEntryMap {
            key: self.0,
            value: Some(d),
        })
    }
}

/// A map of one entry whose value is still to be deserialized by `D`.
struct OneEntryMap<'a, D> {
    key: &'a str,
    value: Option<D>,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for OneEntryMap<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for OneEntryMap<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, D::Error> {
        if self.value.is_none() {
            return Ok(None);
        }
        seed.deserialize(de::value::StrDeserializer::new(self.key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, D::Error> {
        match self.value.take() {
            Some(d) => seed.deserialize(d),
            None => Err(de::Error::custom("a one-entry map's value was read twice")),
        }
    }
}

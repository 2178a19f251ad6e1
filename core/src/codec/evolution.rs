//! How an event enum's stored types and payloads change over time: the
//! stored type name (namespace, aliases of renamed or moved variants), the
//! version of each variant, and the upcaster chain that brings an old
//! payload up to the current shape one version at a time.

use super::{DecodeErrorKind, Event};
use crate::EventType;
use serde::de::{self, Visitor};

/// One step of a variant's upcaster chain: turns a payload stored at
/// version `from` into its shape at version `from + 1`. A variant at
/// version 3 that was written at versions 1 and 2 has two steps; a variant
/// that never changed has none, and needs no code.
///
/// ```
/// use eventcore::{Event, Upcast};
/// use serde::{Deserialize, Serialize};
/// use serde_json::{json, Value};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Order {
///     // v1 {"name": "Ada Lovelace"}, v2 {"first": .., "last": ..}
///     Placed { first: String, last: String },
///     Cancelled,
/// }
/// fn split_name(mut v: Value) -> Result<Value, String> {
///     let name = v["name"].as_str().ok_or("`name` is missing")?.to_owned();
///     let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
///     v = json!({ "first": first, "last": last });
///     Ok(v)
/// }
/// impl Event for Order {
///     const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 2)];
///     const UPCASTS: &'static [Upcast] = &[Upcast::new("Placed", 1, split_name)];
/// }
///
/// let old = eventcore::Payload::from_trusted_json(r#"{"name":"Ada Lovelace"}"#);
/// let placed = Order::decode("Placed", 1, &old)?;
/// assert_eq!(placed, Order::Placed { first: "Ada".into(), last: "Lovelace".into() });
/// assert_eq!(Order::Cancelled.encode()?.schema_version, 1, "an unchanged variant stays at 1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Upcast {
    /// The variant (its current name, without namespace).
    pub variant: &'static str,
    /// The version this step reads; it writes `from + 1`.
    pub from: u32,
    /// The step itself; an `Err` names what was wrong with the old payload.
    pub step: fn(serde_json::Value) -> Result<serde_json::Value, String>,
}

impl Upcast {
    /// A step of `variant`'s chain from version `from` to `from + 1`.
    pub const fn new(
        variant: &'static str,
        from: u32,
        step: fn(serde_json::Value) -> Result<serde_json::Value, String>,
    ) -> Self {
        Upcast { variant, from, step }
    }
}

/// The current version of `variant`: its entry in [`Event::VERSIONS`], else
/// [`Event::SCHEMA_VERSION`].
pub(super) fn version_of<E: Event>(variant: &str) -> u32 {
    E::VERSIONS
        .iter()
        .find(|(name, _)| *name == variant)
        .map_or(E::SCHEMA_VERSION, |(_, version)| *version)
}

/// The variant a stored type name stands for: an alias's target, or the
/// name without this enum's namespace. `None`: not a type of this enum.
pub(super) fn resolve<E: Event>(stored: &str) -> Option<&str> {
    if let Some((_, current)) = E::ALIASES.iter().find(|(old, _)| *old == stored) {
        return Some(current);
    }
    let bare = if E::NAMESPACE.is_empty() {
        stored
    } else {
        match stored
            .strip_prefix(E::NAMESPACE)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            Some(bare) => bare,
            None if E::READS_UNQUALIFIED && !stored.contains('.') => stored,
            None => return None,
        }
    };
    // Only a bare old name is read under the namespace: a moved variant's
    // old name (`user.Created`) is a whole stored name, matched above, and
    // `order.user.Created` was never written (nor listed by
    // `decodable_types`; found by the `event_decoding` fuzz target).
    match E::ALIASES.iter().find(|(old, _)| !old.contains('.') && *old == bare) {
        Some((_, current)) => Some(current),
        None => Some(bare),
    }
}

/// Walks `variant`'s upcaster chain from `from` up to `to`.
pub(super) fn upcast_chain<E: Event>(
    variant: &str,
    from: u32,
    to: u32,
    mut payload: serde_json::Value,
) -> Result<serde_json::Value, DecodeErrorKind> {
    let mut version = from;
    while version < to {
        let step = E::UPCASTS
            .iter()
            .find(|u| u.variant == variant && u.from == version)
            .ok_or(DecodeErrorKind::UnsupportedSchemaVersion {
                found: from,
                supported: to,
            })?;
        payload = (step.step)(payload).map_err(|reason| DecodeErrorKind::UpcastFailed { from: version, reason })?;
        version += 1;
    }
    Ok(payload)
}

/// Every stored type name `E` decodes: each variant under the namespace,
/// bare too when it reads unqualified names, and every alias. `None` for a
/// type that is not a plain enum (a struct stored whole, or a type that
/// decodes anything, like `AnyEvent`): no list can be given.
pub(super) fn decodable_types<E: Event>() -> Option<Vec<EventType>> {
    let mut variants: &'static [&'static str] = &[];
    let _ = E::deserialize(VariantNames(&mut variants));
    if variants.is_empty() {
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for variant in variants {
        if E::NAMESPACE.is_empty() {
            names.push((*variant).to_owned());
        } else {
            names.push(format!("{}.{variant}", E::NAMESPACE));
            if E::READS_UNQUALIFIED {
                names.push((*variant).to_owned());
            }
        }
    }
    for (old, _) in E::ALIASES {
        if E::NAMESPACE.is_empty() || old.contains('.') {
            names.push((*old).to_owned());
        } else {
            names.push(format!("{}.{old}", E::NAMESPACE));
            if E::READS_UNQUALIFIED {
                names.push((*old).to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    Some(names.into_iter().filter_map(|n| EventType::new(n).ok()).collect())
}

/// A deserializer that only learns an enum's variant names: serde's derive
/// hands them to `deserialize_enum`, and nothing else is asked of it.
struct VariantNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for VariantNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only an enum's variant names are read"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = variants;
        Err(de::Error::custom("only an enum's variant names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

//! Request structs that are read from JSON objects only.
//!
//! serde's derived `Deserialize` also accepts a struct written as an array of its field values
//! in declaration order (`"resources": [4, 8192, 50, 7]`), which no client means and which
//! silently depends on the order of the fields. A nested request struct is therefore derived
//! with `#[serde(remote = "Self")]` (which generates the derived code as an inherent
//! `deserialize` function) and given the trait impl by [`object_only!`], which asks for a map.

/// Implements `Deserialize` for a `#[serde(remote = "Self")]` struct, refusing anything but a
/// JSON object with "invalid type: sequence, expected a JSON object" (a 422 naming the field).
macro_rules! object_only {
    ($t:ident) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct ObjectOnly;
                impl<'de> serde::de::Visitor<'de> for ObjectOnly {
                    type Value = $t;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$t, A::Error> {
                        // The inherent function that `remote = "Self"` derived.
                        $t::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(ObjectOnly)
            }
        }
    };
}

pub(crate) use object_only;

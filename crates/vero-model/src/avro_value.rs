//! Conversions between our records and apache-avro `Value`s, by field name.
//!
//! Records are built as `Value::Record` by hand instead of through serde: it is the
//! fastest path through apache-avro and keeps logical types (uuid, timestamp-millis)
//! explicit.

use apache_avro::types::Value;
use uuid::Uuid;

use crate::codec::DecodeError;

pub(crate) fn optional_string(value: &Option<String>) -> Value {
    match value {
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

pub(crate) fn optional_millis(value: Option<i64>) -> Value {
    match value {
        Some(ms) => Value::Union(1, Box::new(Value::TimestampMillis(ms))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

pub(crate) fn string_array(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

/// Field-by-field access to a decoded record; each getter names the field on error.
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    pub(crate) fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Record(fields) => Ok(Self(fields)),
            _ => Err(DecodeError::Avro("top-level value is not a record".into())),
        }
    }

    fn take(&mut self, name: &'static str) -> Result<Value, DecodeError> {
        let at = self.0.iter().position(|(n, _)| n == name).ok_or(DecodeError::Field(name))?;
        Ok(std::mem::replace(&mut self.0[at].1, Value::Null))
    }

    pub(crate) fn string(&mut self, name: &'static str) -> Result<String, DecodeError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn uuid(&mut self, name: &'static str) -> Result<Uuid, DecodeError> {
        match self.take(name)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => s.parse().map_err(|_| DecodeError::Field(name)),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn millis(&mut self, name: &'static str) -> Result<i64, DecodeError> {
        match self.take(name)? {
            Value::TimestampMillis(ms) | Value::Long(ms) => Ok(ms),
            _ => Err(DecodeError::Field(name)),
        }
    }

    /// The items of an array field.
    pub(crate) fn array(&mut self, name: &'static str) -> Result<Vec<Value>, DecodeError> {
        match self.take(name)? {
            Value::Array(items) => Ok(items),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn boolean(&mut self, name: &'static str) -> Result<bool, DecodeError> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn enum_symbol(&mut self, name: &'static str) -> Result<String, DecodeError> {
        match self.take(name)? {
            Value::Enum(_, symbol) => Ok(symbol),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn string_array(&mut self, name: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.take(name)? {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(DecodeError::Field(name)),
                })
                .collect(),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn optional(&mut self, name: &'static str) -> Result<Option<Value>, DecodeError> {
        match self.take(name)? {
            Value::Union(_, inner) if *inner == Value::Null => Ok(None),
            Value::Union(_, inner) => Ok(Some(*inner)),
            Value::Null => Ok(None),
            _ => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn optional_string(&mut self, name: &'static str) -> Result<Option<String>, DecodeError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DecodeError::Field(name)),
        }
    }

    pub(crate) fn optional_millis(&mut self, name: &'static str) -> Result<Option<i64>, DecodeError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(Value::TimestampMillis(ms) | Value::Long(ms)) => Ok(Some(ms)),
            Some(_) => Err(DecodeError::Field(name)),
        }
    }
}

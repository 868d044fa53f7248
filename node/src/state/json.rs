//! JSON values in and out of Automerge documents: paths, containers, scalars,
//! counters.

use super::*;

pub(super) fn conflict(e: automerge::AutomergeError) -> StateOpError {
    StateOpError::Conflict(e.to_string())
}

/// The property `key` names in `obj`: a list index for lists (`append` allows one
/// past the end), else a map key.
pub(super) fn prop_for(
    d: &AutoCommit,
    obj: &ObjId,
    key: &str,
    append: bool,
) -> Result<automerge::Prop, StateOpError> {
    match d.object_type(obj).map_err(conflict)? {
        ObjType::List | ObjType::Text => {
            let i: usize = key.parse().map_err(|_| {
                StateOpError::BadRequest(format!("\"{key}\" is not an index into a list"))
            })?;
            let len = d.length(obj);
            if i > len || (i == len && !append) {
                return Err(StateOpError::BadRequest(format!(
                    "index {i} is past the end of a list of {len}"
                )));
            }
            Ok(automerge::Prop::Seq(i))
        }
        ObjType::Map | ObjType::Table => Ok(automerge::Prop::Map(key.to_owned())),
    }
}

/// The object at `path` from the root; missing maps are created when `create`.
pub(super) fn walk(
    d: &mut AutoCommit,
    path: &[String],
    create: bool,
) -> Result<ObjId, StateOpError> {
    let mut obj = automerge::ROOT;
    for (i, key) in path.iter().enumerate() {
        let prop = prop_for(d, &obj, key, false)?;
        obj = match d.get(&obj, prop.clone()).map_err(conflict)? {
            Some((Value::Object(_), id)) => id,
            Some(_) => {
                return Err(StateOpError::Conflict(format!(
                    "\"{}\" is a value, not a map or list",
                    path[..=i].join("/")
                )));
            }
            None if create => d.put_object(&obj, prop, ObjType::Map).map_err(conflict)?,
            None => {
                return Err(StateOpError::BadRequest(format!(
                    "nothing at \"{}\"",
                    path[..=i].join("/")
                )));
            }
        };
    }
    Ok(obj)
}

pub(super) fn put_json(
    d: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), StateOpError> {
    use serde_json::Value as J;
    let is_list = matches!(d.object_type(obj).map_err(conflict)?, ObjType::List);
    let prop = prop_for(d, obj, key, is_list)?;
    if let automerge::Prop::Seq(i) = prop
        && i == d.length(obj)
    {
        return insert_json(d, obj, i, value);
    }
    match value {
        J::Object(_) | J::Array(_) => {
            let child = d
                .put_object(obj, prop, container_type(value))
                .map_err(conflict)?;
            fill(d, &child, value)
        }
        scalar => d.put(obj, prop, scalar_of(scalar)).map_err(conflict),
    }
}

/// The Automerge object type a JSON object or array becomes.
pub(super) fn container_type(value: &serde_json::Value) -> ObjType {
    if value.is_array() {
        ObjType::List
    } else {
        ObjType::Map
    }
}

/// Fills `child`, just created with [`container_type`], with `value`'s contents.
pub(super) fn fill(
    d: &mut AutoCommit,
    child: &ObjId,
    value: &serde_json::Value,
) -> Result<(), StateOpError> {
    use serde_json::Value as J;
    match value {
        J::Object(map) => map.iter().try_for_each(|(k, v)| put_json(d, child, k, v)),
        J::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| insert_json(d, child, i, v)),
        _ => Ok(()),
    }
}

pub(super) fn insert_json(
    d: &mut AutoCommit,
    list: &ObjId,
    at: usize,
    value: &serde_json::Value,
) -> Result<(), StateOpError> {
    use serde_json::Value as J;
    match value {
        J::Object(_) | J::Array(_) => {
            let child = d
                .insert_object(list, at, container_type(value))
                .map_err(conflict)?;
            fill(d, &child, value)
        }
        scalar => d.insert(list, at, scalar_of(scalar)).map_err(conflict),
    }
}

pub(super) fn scalar_of(value: &serde_json::Value) -> ScalarValue {
    use serde_json::Value as J;
    match value {
        J::Bool(b) => ScalarValue::Boolean(*b),
        J::Number(n) => n
            .as_i64()
            .map(ScalarValue::Int)
            .or_else(|| n.as_u64().map(ScalarValue::Uint))
            .unwrap_or_else(|| ScalarValue::F64(n.as_f64().unwrap_or(0.0))),
        J::String(s) => ScalarValue::Str(s.as_str().into()),
        _ => ScalarValue::Null,
    }
}

/// The value at `path` as JSON, or `None` when nothing is there.
pub(super) fn value_at(
    d: &AutoCommit,
    path: &[String],
) -> Result<Option<serde_json::Value>, StateOpError> {
    let mut obj = automerge::ROOT;
    let Some((last, parent)) = path.split_last() else {
        return Ok(Some(object_json(d, &obj)));
    };
    for key in parent {
        let Ok(prop) = prop_for(d, &obj, key, false) else {
            return Ok(None);
        };
        match d.get(&obj, prop).map_err(conflict)? {
            Some((Value::Object(_), id)) => obj = id,
            _ => return Ok(None),
        }
    }
    let Ok(prop) = prop_for(d, &obj, last, false) else {
        return Ok(None);
    };
    Ok(d.get(&obj, prop)
        .map_err(conflict)?
        .map(|found| value_json(d, found)))
}

pub(super) fn object_json(d: &AutoCommit, obj: &ObjId) -> serde_json::Value {
    use serde_json::Value as J;
    match d.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => J::Object(
            d.keys(obj)
                .filter_map(|k| {
                    let v = value_json(d, d.get(obj, k.as_str()).ok()??);
                    Some((k, v))
                })
                .collect(),
        ),
        Ok(ObjType::List) => J::Array(
            (0..d.length(obj))
                .filter_map(|i| Some(value_json(d, d.get(obj, i).ok()??)))
                .collect(),
        ),
        Ok(ObjType::Text) => J::String(d.text(obj).unwrap_or_default()),
        Err(_) => J::Null,
    }
}

/// A value read from `d` (an object, recursively, or a scalar) as JSON.
pub(super) fn value_json(d: &AutoCommit, (value, id): (Value<'_>, ObjId)) -> serde_json::Value {
    match value {
        Value::Object(_) => object_json(d, &id),
        Value::Scalar(s) => scalar_json(&s),
    }
}

pub(super) fn scalar_json(s: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    match s {
        ScalarValue::Str(s) => J::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => J::from(*i),
        ScalarValue::Uint(u) => J::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        ScalarValue::Counter(_) => J::from(
            Value::Scalar(std::borrow::Cow::Borrowed(s))
                .as_i64()
                .unwrap_or(0),
        ),
        ScalarValue::Boolean(b) => J::Bool(*b),
        ScalarValue::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        _ => J::Null,
    }
}

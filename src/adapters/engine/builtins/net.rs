//! `net.cidr_intersects`, `net.cidr_merge` and `net.cidr_contains_matches` (ipnet), as
//! OPA's `topdown/cidr.go` defines them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use regorus::Value;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] =
    &[("net.cidr_intersects", 2, intersects), ("net.cidr_merge", 1, merge), ("net.cidr_contains_matches", 2, contains_matches)];

fn cidr(v: &Value) -> Option<IpNet> {
    string(v)?.parse().ok()
}

fn intersects(a: &[Value]) -> Option<Value> {
    let (x, y) = (cidr(&a[0])?, cidr(&a[1])?);
    Some(Value::from(x.contains(&y.network()) || y.contains(&x.network())))
}

/// An address without a prefix takes IPv4's classful default mask, as Go's
/// `IP.DefaultMask` (OPA's behaviour); an IPv6 address needs a prefix.
fn network(v: &Value) -> Option<IpNet> {
    let s = string(v)?;
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let prefix = match ip.octets()[0] {
                0..0x80 => 8,
                0x80..0xC0 => 16,
                _ => 24,
            };
            IpNet::new(IpAddr::V4(ip), prefix).ok().map(|n| n.trunc())
        }
        Ok(IpAddr::V6(_)) => None,
        Err(_) => s.parse::<IpNet>().ok().map(|n| n.trunc()),
    }
}

fn merge(a: &[Value]) -> Option<Value> {
    let items: Vec<&Value> = match &a[0] {
        Value::Array(items) => items.iter().collect(),
        Value::Set(items) => items.iter().collect(),
        _ => return None,
    };
    let networks = items.into_iter().map(network).collect::<Option<Vec<_>>>()?;
    let merged: BTreeSet<Value> = IpNet::aggregate(&networks).into_iter().map(|n| Value::from(n.to_string())).collect();
    Some(Value::from(merged))
}

/// The CIDR of an operand element: a string, or the first element of an array.
fn match_term(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_ref()),
        Value::Array(items) => string(items.first()?),
        _ => None,
    }
}

/// `(cidr, key)` pairs of an operand: a string is its own key, an array's key is the
/// index, a set's the element, an object's the key.
fn operand(v: &Value) -> Option<Vec<(String, Value)>> {
    let pairs = match v {
        Value::String(s) => vec![(s.to_string(), v.clone())],
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, x)| Some((match_term(x)?.to_owned(), Value::from(i)))).collect::<Option<_>>()?
        }
        Value::Set(items) => items.iter().map(|x| Some((match_term(x)?.to_owned(), x.clone()))).collect::<Option<_>>()?,
        Value::Object(map) => map.iter().map(|(k, x)| Some((match_term(x)?.to_owned(), k.clone()))).collect::<Option<_>>()?,
        _ => return None,
    };
    Some(pairs)
}

fn contains(net: &IpNet, other: &str) -> Option<bool> {
    match other.parse::<IpNet>() {
        Ok(sub) => Some(net.contains(&sub)),
        Err(_) => other.parse::<IpAddr>().ok().map(|ip| net.contains(&ip)),
    }
}

fn contains_matches(a: &[Value]) -> Option<Value> {
    let (cidrs, others) = (operand(&a[0])?, operand(&a[1])?);
    let mut out = BTreeSet::new();
    for (c, ck) in &cidrs {
        let net: IpNet = c.parse().ok()?;
        for (o, ok) in &others {
            if contains(&net, o)? {
                out.insert(Value::from(vec![ck.clone(), ok.clone()]));
            }
        }
    }
    Some(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Option<Value>) -> Vec<String> {
        match v {
            Some(Value::Set(s)) => s.iter().map(|x| x.as_string().unwrap().to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_joins_adjacent_networks_and_gives_bare_ipv4_addresses_their_classful_mask() {
        let arr = |xs: &[&str]| Value::from(xs.iter().map(|x| Value::from(*x)).collect::<Vec<_>>());
        assert_eq!(strings(merge(&[arr(&["192.0.128.0/24", "192.0.129.0/24"])])), vec!["192.0.128.0/23"]);
        assert_eq!(strings(merge(&[arr(&["192.0.2.112", "192.0.2.116/31"])])), vec!["192.0.2.0/24"]);
        assert_eq!(merge(&[arr(&["fe80::1"])]), None, "IPv6 needs a prefix");
        assert_eq!(merge(&[arr(&["foo"])]), None);
    }

    #[test]
    fn intersects_when_either_network_holds_the_other_s_start() {
        assert_eq!(intersects(&["192.168.0.0/16".into(), "192.168.1.0/24".into()]), Some(true.into()));
        assert_eq!(intersects(&["192.168.1.0/24".into(), "192.168.0.0/16".into()]), Some(true.into()));
        assert_eq!(intersects(&["10.0.0.0/8".into(), "192.168.1.0/24".into()]), Some(false.into()));
    }
}

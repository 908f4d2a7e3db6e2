//! The part of Kubernetes' CEL library (`k8s.io/apiserver/pkg/cel/library`) that the `cel`
//! crate lacks and rules commonly use: the lists library (`isSorted`, `sum`, `min`, `max`,
//! `indexOf`, `lastIndexOf`), the quantity library (`quantity`, `isQuantity`,
//! `isGreaterThan`, `isLessThan`, `compareTo`, `add`, `sub`, `asInteger`, `isInteger`,
//! `asApproximateFloat`, `sign`), the regex library (`find`, `findAll`), the IP and CIDR
//! libraries (`isIP`, `ip`, `isCIDR`, `cidr`, `family`, `containsIP`, ...), the URL library
//! (`isURL`, `url`, `getScheme`, `getHost`, `getHostname`, `getPort`, `getEscapedPath`,
//! `getQuery`), cel-go's `cel.bind` macro and its sets
//! extension (`sets.contains`, `sets.equivalent`, `sets.intersects`).

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::common::ast::{ComprehensionExpr, Expr, ListExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelString, DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE,
};
use cel::common::value::{CowVal, Val};
use cel::parser::Macro;
use cel::{DeclarationError, Env, ExecutionError};

use crate::quantity::Amount;

fn one<'b, 'v, const N: usize>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    args.try_into().map_err(|args: Vec<_>| ExecutionError::invalid_argument_count(N, args.len()))
}

/// The elements of a list argument, cloned.
fn elements<'v>(
    list: &(dyn Val + 'v),
    function: &str,
) -> Result<Vec<Box<dyn Val + 'v>>, ExecutionError> {
    let iterable = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::function_error(function, "receiver must be a list"))?;
    let mut items = iterable.iter();
    let mut out = Vec::new();
    while let Some(item) = items.next() {
        out.push(item.clone_as_boxed());
    }
    Ok(out)
}

fn compare(a: &dyn Val, b: &dyn Val, function: &str) -> Result<Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| {
            ExecutionError::function_error(function, "list elements must be comparable")
        })?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = one(args)?;
    let items = elements(list.as_ref(), "isSorted")?;
    for pair in items.windows(2) {
        if compare(pair[0].as_ref(), pair[1].as_ref(), "isSorted")? == Ordering::Greater {
            return Ok(CowVal::owned(CelBool::from(false)));
        }
    }
    Ok(CowVal::owned(CelBool::from(true)))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = one(args)?;
    let items = elements(list.as_ref(), "sum")?;
    let mut iter = items.into_iter();
    let Some(first) = iter.next() else {
        return Ok(CowVal::owned(CelInt::from(0)));
    };
    let mut total: CowVal<'b, 'v> = CowVal::Owned(first);
    for item in iter {
        let adder = total.as_ref().as_adder().ok_or_else(|| {
            ExecutionError::function_error("sum", "list elements must be numbers")
        })?;
        let next = adder.add(item.as_ref())?;
        total = CowVal::Owned(next.as_ref().clone_as_boxed());
    }
    Ok(total)
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    keep: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = one(args)?;
    let items = elements(list.as_ref(), function)?;
    let mut best: Option<Box<dyn Val + 'v>> = None;
    for item in items {
        best = match best {
            None => Some(item),
            Some(b) if compare(item.as_ref(), b.as_ref(), function)? == keep => Some(item),
            keep_best => keep_best,
        };
    }
    best.map(CowVal::Owned).ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function} called on empty list"))
    })
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", Ordering::Greater)
}

fn position<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    last: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, wanted] = one(args)?;
    let items = elements(list.as_ref(), function)?;
    let found = if last {
        items.iter().rposition(|i| i.equals(wanted.as_ref()))
    } else {
        items.iter().position(|i| i.equals(wanted.as_ref()))
    };
    let index = found.map_or(-1, |i| i as i64);
    Ok(CowVal::owned(CelInt::from(index)))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "indexOf", false)
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position(args, "lastIndexOf", true)
}

/// Registers the Kubernetes lists library on `env`.
pub(crate) fn lists(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("indexOf", "list_index_of", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    Ok(())
}

/// A string argument.
fn text<'a>(v: &'a (dyn Val + '_), function: &str) -> Result<&'a str, ExecutionError> {
    <&str>::try_from(v).map_err(|_| ExecutionError::function_error(function, "expected a string"))
}

/// A quantity argument: quantities are carried as their canonical text.
fn amount(v: &dyn Val, function: &str) -> Result<Amount, ExecutionError> {
    if let Some(i) = v.downcast_ref::<CelInt>() {
        return Ok(Amount::units(*i.inner()));
    }
    Amount::parse(text(v, function)?).map_err(|_| {
        ExecutionError::function_error(
            function,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )
    })
}

fn string_val<'b, 'v>(s: String) -> CowVal<'b, 'v> {
    CowVal::owned(CelString::from(s))
}

fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    Ok(string_val(amount(q.as_ref(), "quantity")?.to_string()))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    let ok = Amount::parse(text(q.as_ref(), "isQuantity")?).is_ok();
    Ok(CowVal::owned(CelBool::from(ok)))
}

fn compare_quantities<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
) -> Result<Ordering, ExecutionError> {
    let [a, b] = one(args)?;
    Ok(amount(a.as_ref(), function)?.cmp(&amount(b.as_ref(), function)?))
}

fn is_greater_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = compare_quantities(args, "isGreaterThan")?;
    Ok(CowVal::owned(CelBool::from(order == Ordering::Greater)))
}

fn is_less_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = compare_quantities(args, "isLessThan")?;
    Ok(CowVal::owned(CelBool::from(order == Ordering::Less)))
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = compare_quantities(args, "compareTo")?;
    Ok(CowVal::owned(CelInt::from(order as i64)))
}

fn add_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = one(args)?;
    let sum = amount(a.as_ref(), "add")? + amount(b.as_ref(), "add")?;
    Ok(string_val(sum.to_string()))
}

fn sub_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = one(args)?;
    let difference = amount(a.as_ref(), "sub")? - amount(b.as_ref(), "sub")?;
    Ok(string_val(difference.to_string()))
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    let q = amount(q.as_ref(), "asInteger")?;
    if q.nanos() % 1_000_000_000 != 0 {
        return Err(ExecutionError::function_error("asInteger", "cannot convert value to integer"));
    }
    let value = i64::try_from(q.value()).map_err(|_| {
        ExecutionError::function_error("asInteger", "cannot convert value to integer")
    })?;
    Ok(CowVal::owned(CelInt::from(value)))
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    let q = amount(q.as_ref(), "isInteger")?;
    let integral = q.nanos() % 1_000_000_000 == 0 && i64::try_from(q.value()).is_ok();
    Ok(CowVal::owned(CelBool::from(integral)))
}

fn as_approximate_float<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    let q = amount(q.as_ref(), "asApproximateFloat")?;
    Ok(CowVal::owned(CelDouble::from(q.nanos() as f64 / 1e9)))
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = one(args)?;
    let q = amount(q.as_ref(), "sign")?;
    Ok(CowVal::owned(CelInt::from(q.nanos().signum() as i64)))
}

/// Registers Kubernetes' quantity library on `env`. Quantities are carried as their
/// canonical text (`quantity('1024Mi') == quantity('1Gi')`), so the methods also accept
/// quantity strings.
pub(crate) fn quantities(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("quantity", "string_to_quantity", vec![STRING_TYPE], quantity)?;
    env.add_overload("isQuantity", "is_quantity_string", vec![STRING_TYPE], is_quantity)?;
    for (name, id, op) in [
        (
            "isGreaterThan",
            "quantity_is_greater_than",
            is_greater_than as cel::common::functions::Function,
        ),
        ("isLessThan", "quantity_is_less_than", is_less_than),
        ("compareTo", "quantity_compare_to", compare_to),
        ("add", "quantity_add", add_quantity),
        ("sub", "quantity_sub", sub_quantity),
    ] {
        env.add_member_overload(name, id, STRING_TYPE, vec![DYN_TYPE], op)?;
    }
    for (name, id, op) in [
        ("asInteger", "quantity_as_integer", as_integer as cel::common::functions::Function),
        ("isInteger", "quantity_is_integer", is_integer),
        ("asApproximateFloat", "quantity_as_approximate_float", as_approximate_float),
        ("sign", "quantity_sign", sign),
    ] {
        env.add_member_overload(name, id, STRING_TYPE, vec![], op)?;
    }
    Ok(())
}

fn compiled_regex(pattern: &str, function: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e.to_string()))
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern] = one(args)?;
    let re = compiled_regex(text(pattern.as_ref(), "find")?, "find")?;
    let found = re.find(text(s.as_ref(), "find")?).map_or("", |m| m.as_str());
    Ok(string_val(found.to_string()))
}

fn find_all_limited<'b, 'v>(
    s: &str,
    pattern: &str,
    limit: Option<i64>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = compiled_regex(pattern, "findAll")?;
    let limit = match limit {
        Some(n) if n >= 0 => n as usize,
        _ => usize::MAX,
    };
    let found: Vec<Box<dyn Val + 'v>> = re
        .find_iter(s)
        .take(limit)
        .map(|m| Box::new(CelString::from(m.as_str().to_string())) as Box<dyn Val + 'v>)
        .collect();
    Ok(CowVal::owned(CelList::from(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern] = one(args)?;
    find_all_limited(text(s.as_ref(), "findAll")?, text(pattern.as_ref(), "findAll")?, None)
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern, n] = one(args)?;
    let n = *n
        .as_ref()
        .downcast_ref::<CelInt>()
        .ok_or_else(|| ExecutionError::function_error("findAll", "expected an int"))?
        .inner();
    find_all_limited(text(s.as_ref(), "findAll")?, text(pattern.as_ref(), "findAll")?, Some(n))
}

/// Registers Kubernetes' regex library (`find`, `findAll`) on `env`.
pub(crate) fn regexes(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("find", "string_find_string", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    Ok(())
}

/// Elements of a list, cloned.
type Items<'v> = [Box<dyn Val + 'v>];

fn sets_relation<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    relation: fn(&Items<'v>, &Items<'v>) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = one(args)?;
    let a = elements(a.as_ref(), function)?;
    let b = elements(b.as_ref(), function)?;
    Ok(CowVal::owned(CelBool::from(relation(&a, &b))))
}

fn contains_all<'v>(a: &Items<'v>, b: &Items<'v>) -> bool {
    b.iter().all(|x| a.iter().any(|y| y.equals(x.as_ref())))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    sets_relation(args, "sets.contains", contains_all)
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    sets_relation(args, "sets.equivalent", |a, b| contains_all(a, b) && contains_all(b, a))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    sets_relation(args, "sets.intersects", |a, b| {
        b.iter().any(|x| a.iter().any(|y| y.equals(x.as_ref())))
    })
}

/// Registers cel-go's sets extension (`sets.contains`, `sets.equivalent`,
/// `sets.intersects`) on `env`.
pub(crate) fn sets(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_intersects,
    )?;
    Ok(())
}

/// An address as Kubernetes' IP library accepts it: no zone, no IPv4-mapped IPv6.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

/// A prefix as Kubernetes' CIDR library accepts it: `address/length`.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip(ip)?;
    if bits.is_empty() || bits.starts_with('+') || (bits.len() > 1 && bits.starts_with('0')) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn ip_arg(v: &dyn Val, function: &str) -> Result<IpAddr, ExecutionError> {
    parse_ip(text(v, function)?)
        .ok_or_else(|| ExecutionError::function_error(function, "IP Address parse error"))
}

fn cidr_arg(v: &dyn Val, function: &str) -> Result<(IpAddr, u8), ExecutionError> {
    parse_cidr(text(v, function)?)
        .ok_or_else(|| ExecutionError::function_error(function, "network address parse error"))
}

/// The first `bits` bits of `ip`, the rest zero.
fn masked_ip(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    Ok(CowVal::owned(CelBool::from(parse_ip(text(s.as_ref(), "isIP")?).is_some())))
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    Ok(CowVal::owned(CelBool::from(parse_cidr(text(s.as_ref(), "isCIDR")?).is_some())))
}

fn ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    Ok(string_val(ip_arg(s.as_ref(), "ip")?.to_string()))
}

fn cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    let (ip, bits) = cidr_arg(s.as_ref(), "cidr")?;
    Ok(string_val(format!("{ip}/{bits}")))
}

fn is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    let text = text(s.as_ref(), "ip.isCanonical")?;
    let ip = ip_arg(s.as_ref(), "ip.isCanonical")?;
    Ok(CowVal::owned(CelBool::from(ip.to_string() == text)))
}

fn family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    let family = if ip_arg(s.as_ref(), "family")?.is_ipv4() { 4 } else { 6 };
    Ok(CowVal::owned(CelInt::from(family)))
}

fn ip_predicate<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    predicate: fn(IpAddr) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    Ok(CowVal::owned(CelBool::from(predicate(ip_arg(s.as_ref(), function)?))))
}

fn is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate(args, "isUnspecified", |ip| ip.is_unspecified())
}

fn is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate(args, "isLoopback", |ip| ip.is_loopback())
}

fn is_link_local_multicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate(args, "isLinkLocalMulticast", |ip| match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    })
}

fn is_link_local_unicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate(args, "isLinkLocalUnicast", |ip| match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    })
}

fn is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate(args, "isGlobalUnicast", |ip| match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_link_local())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.segments()[0] & 0xffc0 == 0xfe80)
        }
    })
}

fn contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, i] = one(args)?;
    let (net, bits) = cidr_arg(c.as_ref(), "containsIP")?;
    let ip = ip_arg(i.as_ref(), "containsIP")?;
    let inside = net.is_ipv4() == ip.is_ipv4() && masked_ip(ip, bits) == masked_ip(net, bits);
    Ok(CowVal::owned(CelBool::from(inside)))
}

fn contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, other] = one(args)?;
    let (net, bits) = cidr_arg(c.as_ref(), "containsCIDR")?;
    let (sub, sub_bits) = cidr_arg(other.as_ref(), "containsCIDR")?;
    let inside = net.is_ipv4() == sub.is_ipv4()
        && sub_bits >= bits
        && masked_ip(sub, bits) == masked_ip(net, bits);
    Ok(CowVal::owned(CelBool::from(inside)))
}

fn prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = one(args)?;
    let (_, bits) = cidr_arg(c.as_ref(), "prefixLength")?;
    Ok(CowVal::owned(CelInt::from(i64::from(bits))))
}

fn masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = one(args)?;
    let (ip, bits) = cidr_arg(c.as_ref(), "masked")?;
    Ok(string_val(format!("{}/{bits}", masked_ip(ip, bits))))
}

/// Registers Kubernetes' IP and CIDR libraries on `env`. Addresses and prefixes are carried
/// as their canonical text, so the methods also accept address and prefix strings.
pub(crate) fn addresses(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], ip)?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], cidr)?;
    env.add_overload("ip.isCanonical", "ip_is_canonical", vec![STRING_TYPE], is_canonical)?;
    for (name, id, op) in [
        ("family", "ip_family", family as cel::common::functions::Function),
        ("isUnspecified", "ip_is_unspecified", is_unspecified),
        ("isLoopback", "ip_is_loopback", is_loopback),
        ("isLinkLocalMulticast", "ip_is_link_local_multicast", is_link_local_multicast),
        ("isLinkLocalUnicast", "ip_is_link_local_unicast", is_link_local_unicast),
        ("isGlobalUnicast", "ip_is_global_unicast", is_global_unicast),
        ("prefixLength", "cidr_prefix_length", prefix_length),
        ("masked", "cidr_masked", masked),
    ] {
        env.add_member_overload(name, id, STRING_TYPE, vec![], op)?;
    }
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip",
        STRING_TYPE,
        vec![STRING_TYPE],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        STRING_TYPE,
        vec![STRING_TYPE],
        contains_cidr,
    )?;
    Ok(())
}

/// The parts of a URL as Go's `url.ParseRequestURI` takes it apart: an absolute URI
/// (`scheme:...`) or an absolute path.
struct Url<'a> {
    scheme: &'a str,
    host: &'a str,
    path: &'a str,
    query: &'a str,
}

fn parse_url(s: &str) -> Option<Url<'_>> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (scheme, rest) = if s.starts_with('/') {
        ("", s)
    } else {
        let (scheme, rest) = s.split_once(':')?;
        let mut chars = scheme.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid {
            return None;
        }
        (scheme, rest)
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let authority = &after[..end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (host, &after[end..])
        }
        None => ("", rest),
    };
    Some(Url { scheme, host, path, query })
}

fn url_arg<'a>(v: &'a dyn Val, function: &str) -> Result<Url<'a>, ExecutionError> {
    parse_url(text(v, function)?)
        .ok_or_else(|| ExecutionError::function_error(function, "URL parse error"))
}

/// The host of a URL and its port, the brackets of an IPv6 host dropped.
fn host_and_port(host: &str) -> (&str, &str) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':').unwrap_or("")),
            None => (rest, ""),
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) => (h, port),
        None => (host, ""),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    Ok(CowVal::owned(CelBool::from(parse_url(text(s.as_ref(), "isURL")?).is_some())))
}

fn url<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    url_arg(s.as_ref(), "url")?;
    Ok(string_val(text(s.as_ref(), "url")?.to_string()))
}

fn url_part<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    part: fn(&Url<'_>) -> String,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    let url = url_arg(s.as_ref(), function)?;
    Ok(string_val(part(&url)))
}

fn get_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    url_part(args, "getScheme", |u| u.scheme.to_string())
}

fn get_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    url_part(args, "getHost", |u| u.host.to_string())
}

fn get_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    url_part(args, "getHostname", |u| host_and_port(u.host).0.to_string())
}

fn get_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    url_part(args, "getPort", |u| host_and_port(u.host).1.to_string())
}

fn get_escaped_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    url_part(args, "getEscapedPath", |u| u.path.to_string())
}

fn get_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = one(args)?;
    let url = url_arg(s.as_ref(), "getQuery")?;
    let mut query: std::collections::HashMap<String, Vec<cel::Value>> = Default::default();
    for pair in url.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.entry(percent_decode(k)).or_default().push(cel::Value::from(percent_decode(v)));
    }
    let map: std::collections::HashMap<String, cel::Value> =
        query.into_iter().map(|(k, v)| (k, cel::Value::List(std::sync::Arc::new(v)))).collect();
    let value = Box::<dyn Val>::try_from(cel::Value::Map(map.into()))?;
    Ok(CowVal::Owned(value))
}

/// Registers Kubernetes' URL library on `env`. URLs are carried as their text, so the
/// methods also accept URL strings.
pub(crate) fn urls(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], url)?;
    for (name, id, op) in [
        ("getScheme", "url_get_scheme", get_scheme as cel::common::functions::Function),
        ("getHost", "url_get_host", get_host),
        ("getHostname", "url_get_hostname", get_hostname),
        ("getPort", "url_get_port", get_port),
        ("getEscapedPath", "url_get_escaped_path", get_escaped_path),
        ("getQuery", "url_get_query", get_query),
    ] {
        env.add_member_overload(name, id, STRING_TYPE, vec![], op)?;
    }
    Ok(())
}

/// Registers cel-go's `cel.bind(name, value, expression)` macro on `env`: `expression` with
/// `name` bound to `value`, as a comprehension over nothing whose accumulator is `name`.
pub(crate) fn bind(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_macro(Macro::receiver("bind", 3, |helper, target, args| {
        let on_cel = matches!(target.as_ref().map(|t| &t.expr), Some(Expr::Ident(n)) if n == "cel");
        if !on_cel || args.len() != 3 {
            return Ok(None);
        }
        let result = args.remove(2);
        let init = args.remove(1);
        let var = args.remove(0);
        let Expr::Ident(name) = var.expr else {
            return Err(
                helper.new_error(var.id, "cel.bind() variable names must be simple identifiers")
            );
        };
        let bind = ComprehensionExpr {
            iter_range: helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
            iter_var: "#unused".to_owned(),
            iter_var2: None,
            accu_var: name.clone(),
            accu_init: init,
            loop_cond: helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into()))),
            loop_step: helper.next_expr(Expr::Ident(name)),
            result,
        };
        Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(bind)))))
    }))
}

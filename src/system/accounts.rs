//! System groups and accounts. An account cannot log in (nologin) unless
//! it is to run the commands its SSH keys force; one that exists is left
//! as it is.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// `present` or `absent` for each group of `names` (one getent).
pub(super) fn observe_groups(program: &mut Program, names: &[&str]) {
    let args: Vec<&str> = ["group", "group"]
        .into_iter()
        .chain(names.iter().copied())
        .collect();
    program.call(HostFn::ObserveAccounts, &args);
}

/// `present` or `absent` for each account of `names` (one getent).
pub(super) fn observe_users(program: &mut Program, names: &[&str]) {
    let args: Vec<&str> = ["user", "passwd"]
        .into_iter()
        .chain(names.iter().copied())
        .collect();
    program.call(HostFn::ObserveAccounts, &args);
}

pub(super) fn group_difference(state: &str) -> Option<Difference> {
    (state != "present").then(|| Difference::create(String::new()))
}

pub(super) fn user_difference(
    group: &str,
    home: &str,
    login: bool,
    state: &str,
) -> Option<Difference> {
    (state != "present").then(|| {
        let login = if login { ", logs in over SSH" } else { "" };
        Difference::create(format!("group {group}, home {home}{login}"))
    })
}

/// Every missing group, then every missing account: an account's group
/// is there before it.
pub(super) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Group { name } = &change.item {
            program.call(HostFn::Group, &[name]);
        }
    }
    for change in changes {
        if let Item::User {
            name,
            group,
            home,
            login,
        } = &change.item
        {
            let shell = if *login {
                "/bin/sh"
            } else {
                "/usr/sbin/nologin"
            };
            program.call(HostFn::User, &[name, group, home, shell]);
        }
    }
}

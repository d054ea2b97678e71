use filature::{run_in_reactor, run_in_thread, run_in_waitable_green_thread};

#[run_in_thread]
fn no_id() {}

#[run_in_thread("db", later)]
fn wrong_flag() {}

#[run_in_thread("db", scheduled, twice)]
fn too_many() {}

#[run_in_reactor(now)]
fn reactor_takes_none() {}

#[run_in_waitable_green_thread("x")]
fn waitable_takes_none() {}

fn main() {}

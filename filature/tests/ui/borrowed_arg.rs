use filature::{run_in_reactor, run_in_waitable_green_thread};

#[run_in_reactor]
fn log_line(line: &str) {
    println!("{line}");
}

#[run_in_waitable_green_thread]
fn first(items: &mut Vec<u32>) -> Option<u32> {
    items.pop()
}

fn main() {}

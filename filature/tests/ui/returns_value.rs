use filature::{run_in_green_thread, run_in_thread};

#[run_in_thread("db")]
fn count() -> u32 {
    1
}

#[run_in_green_thread]
fn name() -> String {
    String::new()
}

fn main() {}

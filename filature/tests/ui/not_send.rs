use std::rc::Rc;

use filature::run_in_thread;

#[run_in_thread("db")]
fn keep(value: Rc<u32>) {
    println!("{value}");
}

fn main() {}

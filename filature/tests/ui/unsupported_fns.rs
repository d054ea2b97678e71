use filature::{run_in_green_thread, run_in_reactor, run_in_thread, run_in_waitable_green_thread};

#[run_in_green_thread]
async fn fetch() {}

#[run_in_reactor]
unsafe fn poke() {}

#[run_in_thread("db")]
const fn constant() {}

#[run_in_waitable_green_thread]
fn closure() -> impl Fn() -> u32 {
    || 1
}

#[run_in_thread("db")]
fn callback(f: impl Fn() + Send) {
    f()
}

trait Store {
    #[run_in_thread("db")]
    fn save(self);
}

fn main() {}

//! `green::Command`: the actor-message idiom with a one-shot reply.

use std::time::Duration;

use filature::green::{self, Command};
use filature::sync::Queue;
use filature::{AlreadyCalled, Cancelled, Failure, TimedOut};

const LONG: Duration = Duration::from_secs(20);

enum Msg {
    Double(u32, Command<u32>),
    Fail(Command<u32>),
    Ignore(Command<u32>),
    Stop,
}

fn actor(rx: Queue<Msg>) -> green::JoinHandle<()> {
    green::spawn(move || loop {
        match rx.get() {
            Msg::Double(v, cmd) => cmd.signal(v * 2).unwrap(),
            Msg::Fail(cmd) => cmd.signal_err(Failure::from_error(TimedOut)).unwrap(),
            Msg::Ignore(cmd) => drop(cmd),
            Msg::Stop => return,
        }
    })
}

#[test]
fn the_sender_gets_the_actors_reply() {
    let q = Queue::unbounded();
    let a = actor(q.clone());
    let (cmd, reply) = Command::new("double");
    q.put(Msg::Double(21, cmd));
    assert_eq!(reply.wait().unwrap(), 42);
    q.put(Msg::Stop);
    a.join();
}

#[test]
fn a_failure_reply_keeps_its_type() {
    let q = Queue::unbounded();
    let a = actor(q.clone());
    let (cmd, reply) = Command::new("fail");
    q.put(Msg::Fail(cmd));
    assert!(reply.wait().unwrap_err().is::<TimedOut>());
    q.put(Msg::Stop);
    a.join();
}

#[test]
fn signalling_twice_is_an_error_and_the_first_answer_stands() {
    let (cmd, reply) = Command::new("twice");
    cmd.signal(1).unwrap();
    assert_eq!(cmd.signal(2), Err(AlreadyCalled));
    assert_eq!(
        cmd.signal_err(Failure::from_error(TimedOut)),
        Err(AlreadyCalled)
    );
    assert!(cmd.is_signalled());
    assert_eq!(reply.wait().unwrap(), 1);
}

#[test]
fn a_command_dropped_unanswered_fails_the_waiter_with_cancelled() {
    let q = Queue::unbounded();
    let a = actor(q.clone());
    let (cmd, reply) = Command::new("ignored");
    q.put(Msg::Ignore(cmd));
    assert!(reply.wait().unwrap_err().is::<Cancelled>());
    q.put(Msg::Stop);
    a.join();
}

#[test]
fn the_reply_can_be_waited_on_from_another_os_thread() {
    let (cmd, reply) = Command::<&'static str>::new("cross");
    let waiter = std::thread::spawn(move || reply.wait_timeout(LONG).ok().unwrap().unwrap());
    std::thread::sleep(Duration::from_millis(5));
    cmd.signal("answered").unwrap();
    assert_eq!(waiter.join().unwrap(), "answered");
}

#[test]
fn wait_timeout_gives_the_reply_back_to_wait_again() {
    let (cmd, reply) = Command::<u8>::new("late");
    let reply = reply.wait_timeout(Duration::from_millis(5)).unwrap_err();
    assert_eq!(reply.name(), "late");
    assert!(reply.try_get().is_none());
    cmd.signal(3).unwrap();
    assert_eq!(reply.wait_timeout(LONG).ok().unwrap().unwrap(), 3);
}

#[test]
fn a_reply_is_a_future() {
    let (cmd, reply) = Command::<u8>::new("async");
    let h = filature::hub::spawn_future(async move { reply.await.unwrap() + 1 });
    cmd.signal(1).unwrap();
    assert_eq!(h.join(), 2);
}

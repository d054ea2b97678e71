//! DeferredList and gather_results.

use filature::deferred::{
    fail, gather_results, succeed, Deferred, DeferredList, FirstError, ListResult,
};
use filature::{Cancelled, Failure, TimedOut};

fn all<T: Send + 'static>(d: &Deferred<ListResult<T>>) -> Vec<Result<T, Failure>> {
    match d.take_result().expect("fired").expect("succeeded") {
        ListResult::All(results) => results,
        ListResult::First { index, .. } => panic!("unexpected First {{ index: {index} }}"),
    }
}

#[test]
fn results_come_in_input_order_not_firing_order() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone())
        .consume_errors(true)
        .into_deferred();
    ds[2].callback(2).unwrap();
    ds[0].errback(Failure::from_error(TimedOut)).unwrap();
    assert!(!list.is_called());
    ds[1].callback(1).unwrap();
    let results = all(&list);
    assert!(results[0].as_ref().unwrap_err().is::<TimedOut>());
    assert_eq!(*results[1].as_ref().unwrap(), 1);
    assert_eq!(*results[2].as_ref().unwrap(), 2);
}

#[test]
fn already_fired_inputs_are_collected_at_once() {
    let list = DeferredList::new(vec![succeed(1), succeed(2)]).into_deferred();
    let values: Vec<u32> = all(&list).into_iter().map(Result::unwrap).collect();
    assert_eq!(values, [1, 2]);
}

#[test]
fn fire_on_one_callback_reports_the_index() {
    let ds: Vec<Deferred<&str>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone())
        .fire_on_one_callback(true)
        .into_deferred();
    ds[1].callback("b").unwrap();
    assert!(matches!(
        list.take_result(),
        Some(Ok(ListResult::First {
            index: 1,
            value: "b"
        }))
    ));
    // Later inputs no longer matter.
    ds[0].callback("a").unwrap();
    ds[2].callback("c").unwrap();
}

#[test]
fn fire_on_one_errback_reports_the_index_in_first_error() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone())
        .fire_on_one_errback(true)
        .consume_errors(true)
        .into_deferred();
    ds[0].callback(0).unwrap();
    ds[2].errback(Failure::from_error(TimedOut)).unwrap();
    let failure = list.take_result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().expect("a FirstError");
    assert_eq!(first.index, 2);
    assert!(first.failure.is::<TimedOut>());
}

#[test]
fn empty_list_fires_at_once_even_with_fire_on_one() {
    for (on_cb, on_eb) in [(false, false), (true, false), (false, true), (true, true)] {
        let list = DeferredList::<u32>::new(Vec::new())
            .fire_on_one_callback(on_cb)
            .fire_on_one_errback(on_eb)
            .into_deferred();
        assert!(all(&list).is_empty());
    }
}

#[test]
fn without_consume_errors_the_input_keeps_its_failure() {
    let input = fail::<u32>(Failure::from_error(TimedOut));
    let list = DeferredList::new(vec![input.clone()]).into_deferred();
    assert!(all(&list)[0].as_ref().unwrap_err().is::<TimedOut>());
    assert!(input.result_now().unwrap().unwrap_err().is::<TimedOut>());
}

#[test]
fn with_consume_errors_the_input_gives_its_failure_up() {
    let input = fail::<u32>(Failure::from_error(TimedOut));
    let list = DeferredList::new(vec![input.clone()])
        .consume_errors(true)
        .into_deferred();
    assert!(all(&list)[0].as_ref().unwrap_err().is::<TimedOut>());
    assert!(input
        .take_result()
        .unwrap()
        .is_err_and(|f| !f.is::<TimedOut>()));
}

#[test]
fn cancelling_the_list_cancels_every_input() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let list = DeferredList::new(ds.clone())
        .consume_errors(true)
        .into_deferred();
    list.cancel();
    assert!(ds.iter().all(Deferred::is_called));
    let results = all(&list);
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is::<Cancelled>()));
}

#[test]
fn gather_results_collects_values_in_order() {
    let ds: Vec<Deferred<u32>> = (0..4).map(|_| Deferred::new()).collect();
    let gathered = gather_results(ds.clone());
    for (i, d) in ds.iter().enumerate().rev() {
        d.callback(i as u32 * 10).unwrap();
    }
    assert_eq!(gathered.take_result().unwrap().unwrap(), [0, 10, 20, 30]);
}

#[test]
fn gather_results_fails_with_the_first_error_and_its_index() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let gathered = gather_results(ds.clone());
    ds[0].callback(0).unwrap();
    ds[1].errback(Failure::from_error(TimedOut)).unwrap();
    ds[2].errback(Failure::from_error(Cancelled)).unwrap();
    let failure = gathered.take_result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().unwrap();
    assert_eq!(first.index, 1);
    assert!(first.failure.is::<TimedOut>());
}

#[test]
fn gather_results_of_nothing_is_an_empty_vec() {
    let gathered = gather_results(Vec::<Deferred<u32>>::new());
    assert!(gathered.take_result().unwrap().unwrap().is_empty());
}

#[test]
fn cancelling_gather_results_cancels_all_inputs() {
    let ds: Vec<Deferred<u32>> = (0..3).map(|_| Deferred::new()).collect();
    let gathered = gather_results(ds.clone());
    gathered.cancel();
    for d in &ds {
        assert!(d.is_called(), "every input was cancelled");
    }
    let failure = gathered.take_result().unwrap().unwrap_err();
    let first = failure.downcast_ref::<FirstError>().expect("a FirstError");
    assert_eq!(first.index, 0);
    assert!(first.failure.is::<Cancelled>());
}

//! The pool of RTP ports the endpoint hands out: even ports for RTP, the
//! odd one above each for RTCP (RFC 3550 §11).

use std::collections::VecDeque;
use std::fmt;

/// Asks the IO edge to hold the pair at a port before the endpoint writes
/// it into SDP; `false` when another process has it. The pool's range is
/// shared with the rest of the machine (it may overlap the OS's ephemeral
/// ports), so a free port in the pool is not yet a free port on the host.
pub type Reserve = Box<dyn FnMut(u16) -> bool + Send>;

/// Ports tried per allocation before giving up: a pool where this many
/// pairs in a row are held by other processes is misconfigured, and the
/// core thread should not spend a bind per port of the range finding out.
const ATTEMPTS: usize = 32;

pub struct PortPool {
    /// Free even ports, least recently released first, so a port is not
    /// reused while stray packets of its last call may still arrive.
    free: VecDeque<u16>,
    reserve: Option<Reserve>,
}

impl fmt::Debug for PortPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortPool")
            .field("free", &self.free.len())
            .field("reserve", &self.reserve.is_some())
            .finish()
    }
}

impl PortPool {
    /// Every even port in `first..=last` whose RTCP port is in range too.
    pub fn new(first: u16, last: u16) -> Self {
        let start = first + (first & 1);
        let free = (start..last)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|rtcp| rtcp <= last))
            .collect();
        Self {
            free,
            reserve: None,
        }
    }

    /// From now on a port is handed out only once `reserve` holds it.
    pub fn set_reserve(&mut self, reserve: Reserve) {
        self.reserve = Some(reserve);
    }

    /// The least recently released port the edge could hold; a port it
    /// could not goes to the back of the queue, to be tried again later.
    pub fn allocate(&mut self) -> Option<u16> {
        for _ in 0..self.free.len().min(ATTEMPTS) {
            let port = self.free.pop_front()?;
            let held = self.reserve.as_mut().is_none_or(|reserve| reserve(port));
            if held {
                return Some(port);
            }
            self.free.push_back(port);
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pairs_inside_the_range_reused_last() {
        let mut pool = PortPool::new(10001, 10006);
        assert_eq!(pool.available(), 2); // 10002/3, 10004/5; 10006 has no 10007
        let a = pool.allocate().unwrap();
        assert_eq!(a, 10002);
        pool.release(a);
        assert_eq!(pool.allocate(), Some(10004));
        assert_eq!(pool.allocate(), Some(10002));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn ports_the_edge_cannot_hold_are_skipped_and_kept_for_later() {
        let mut pool = PortPool::new(10000, 10007);
        let taken = std::sync::Arc::new(std::sync::Mutex::new(vec![10000, 10004]));
        let held = taken.clone();
        pool.set_reserve(Box::new(move |p| !held.lock().unwrap().contains(&p)));
        assert_eq!(pool.allocate(), Some(10002));
        assert_eq!(pool.allocate(), Some(10006));
        assert_eq!(pool.allocate(), None, "the rest are taken");
        assert_eq!(pool.available(), 2, "taken ports stay in the pool");
        taken.lock().unwrap().clear();
        assert_eq!(pool.allocate(), Some(10000));
    }
}

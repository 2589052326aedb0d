//! The pool of RTP ports the endpoint hands out: even ports for RTP, the
//! odd one above each for RTCP (RFC 3550 §11).

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct PortPool {
    /// Free even ports, least recently released first, so a port is not
    /// reused while stray packets of its last call may still arrive.
    free: VecDeque<u16>,
}

impl PortPool {
    /// Every even port in `first..=last` whose RTCP port is in range too.
    pub fn new(first: u16, last: u16) -> Self {
        let start = first + (first & 1);
        let free = (start..last)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|rtcp| rtcp <= last))
            .collect();
        Self { free }
    }

    pub fn allocate(&mut self) -> Option<u16> {
        self.free.pop_front()
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
}

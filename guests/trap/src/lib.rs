//! A hostile guest for the runtime's tests: it traps on every event, so the
//! router must apply the tenant's fallback and keep the other calls alive.

use switchyard_sdk::prelude::*;

#[call_handler]
fn handle(_ctx: Context, _event: Event) -> Result<Plan, HandlerError> {
    panic!("deliberate trap for tests")
}

// Answers the whole environment it sees, as an object of name -> value. The
// host passes only the function's configured variables (env and secrets),
// nothing of its own. Read process.env inside the handler: at module top
// level it is the (empty) build-time environment.
export const handler = async (event, context) => process.env;

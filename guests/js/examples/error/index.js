// error: a thrown Error becomes a FunctionError with Lambda's errorType,
// errorMessage and stackTrace.
class ValidationError extends Error {
  constructor(message) {
    super(message);
    this.name = "ValidationError";
  }
}

export const handler = async (event) => {
  if (!event || typeof event.name !== "string") throw new ValidationError("name is required");
  return { greeting: `hello ${event.name}` };
};

// The Serverless Framework's Node.js "hello" function, unchanged.
export const handler = async (event, context) => {
  console.log("event:", JSON.stringify(event));
  return {
    statusCode: 200,
    body: JSON.stringify({ message: "Hello from Serverless!" }),
  };
};

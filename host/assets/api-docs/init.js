// Renders /openapi.json with the embedded Swagger UI. Kept out of index.html so the page
// works under a Content-Security-Policy without 'unsafe-inline'. validatorUrl: null keeps
// the page from contacting the public validator: everything it loads comes from this host.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#reference",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
  tryItOutEnabled: false,
});

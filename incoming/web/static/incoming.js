/* incoming.js: placeholder until the browser library lands. */

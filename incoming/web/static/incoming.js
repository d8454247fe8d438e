/*
 * incoming.js: the browser library of Incoming!!
 *
 * Load it with a plain <script> tag from the Incoming!! server:
 *
 *     <script src="https://INCOMING_HOST/incoming/frontend/incoming.js"></script>
 *
 * It defines one global, `incoming`, with `incoming.Uploader(ticket, file)`
 * and `incoming.set_server_hostname(hostname)`. An uploader sends one File to
 * the server with the tus 1.0.0 protocol (the ticket travels in the creation
 * request's Upload-Metadata), resumes after network loss or a server restart,
 * and reports `finished` only once the web app's backend has taken the file.
 *
 * Plain ES2017, no dependencies, no build step. The user documentation is
 * in the project's README.rst.
 */
(function (global) {
    'use strict';

    var TUS_VERSION = '1.0.0';
    var OFFSET_CONTENT_TYPE = 'application/offset+octet-stream';

    /*
     * Chunk sizes. Every chunk is one request (a PATCH, or the claim for a
     * file that goes in one chunk), and each costs a request's setup and a
     * round trip on top of its bytes: about 10 ms in Chromium on
     * loopback, where 8 MiB chunks made uploads a quarter slower than one
     * PATCH for the whole file. The bytes of a chunk are confirmed
     * (bytes_acked, frac_complete) only when its answer comes, though, and
     * on a slow uplink a huge chunk would leave the progress bar still for
     * minutes. So chunks are sized by time, not bytes: the first one is
     * FIRST_CHUNK, and each next one is what the last one's rate sends in
     * CHUNK_SECONDS, never less than FIRST_CHUNK and never more than the
     * server's limit (Incoming-Chunk-Size, its --chunk-size: set it below a
     * reverse proxy's body size limit); a rest smaller than the chunk goes
     * with it. A fast link then takes a large file in a few PATCHes (over
     * loopback, 512 MiB in two: 8 MiB, then the rest), a slow one in chunks
     * of FIRST_CHUNK. A large chunk risks nothing: the server writes a
     * PATCH's bytes as they arrive and keeps them if the connection drops,
     * and bytes_tx follows the upload progress events within a chunk.
     */
    var FIRST_CHUNK = 8 * 1024 * 1024;
    var CHUNK_SECONDS = 2;
    // Seconds the server may hold a state request open (it allows up to 60).
    var STATE_WAIT = 50;
    // Milliseconds: a small request (OPTIONS, POST, HEAD, DELETE, state)
    // that gets no answer in this time is taken as a lost connection. A state
    // long-poll gets this much on top of STATE_WAIT.
    var REQUEST_TIMEOUT = 30000;
    // Milliseconds a PATCH may go without upload progress (or, once its body
    // is sent, without an answer: the server syncs the file to disk before it
    // answers the last chunk) before it is taken as a dead connection.
    var STALL_TIMEOUT = 120000;
    // Reconnection delays in milliseconds: doubling from the first to the
    // max, each scaled by a random factor in [0.5, 1] so that many browsers
    // that lost the same server do not all come back at the same instant.
    var RETRY_FIRST = 1000;
    var RETRY_MAX = 30000;

    // The numbered errors an uploader reports through onerror (error_code).
    // Below 10: a call the page made at the wrong time or with a wrong
    // argument; it was ignored and the upload goes on as before. From 10 on:
    // the upload is over. See README.rst for the full table.
    var errors = Object.freeze({
        ALREADY_STARTED: 1,      // start() called again, or after the upload is over
        BAD_PAUSE_ARGUMENT: 2,   // pause() got something other than 'pause', 'unpause', 'toggle'
        CANNOT_PAUSE_NOW: 3,     // pause() while can_pause is false
        CANNOT_CANCEL_NOW: 4,    // cancel() while can_cancel is false
        NO_TICKET: 10,           // Uploader() got no ticket (upload id)
        NO_FILE: 11,             // Uploader() got no File (or Blob)
        BAD_SERVER_HOSTNAME: 12, // set_server_hostname() got something that is no host
        TICKET_UNKNOWN: 20,      // the server does not know the ticket (never issued, expired, forgotten)
        TICKET_USED: 21,         // the ticket is already used for another file
        FILE_TOO_LARGE: 22,      // the file is larger than the server or the ticket allows
        FILE_UNREADABLE: 23,     // the browser cannot read the file (changed or removed since it was chosen)
        HANDOVER_FAILED: 24,     // all bytes arrived, but the server could not hand the file to the backend
        SERVER_REFUSED: 25,      // the server refused a request in a way that cannot be retried
        INTERNAL_ERROR: 90       // a bug in incoming.js
    });

    // Where the Incoming!! frontend is: the URL of the directory this script
    // was loaded from (".../incoming/frontend/"). document.currentScript is
    // only set while the script first runs, so it is read now.
    var scriptBase = findScriptBase();
    var serverBase = scriptBase;        // a URL ending in "/incoming/frontend/"
    var serverBaseError = null;         // set when set_server_hostname got garbage

    function findScriptBase() {
        var src = null;
        if (typeof document !== 'undefined') {
            if (document.currentScript && document.currentScript.src) {
                src = document.currentScript.src;
            } else {
                // Loaded in some way that leaves no currentScript: look for
                // the tag by the path the server serves this file at.
                var scripts = document.getElementsByTagName('script');
                for (var i = scripts.length - 1; i >= 0 && !src; i--) {
                    if (/\/incoming\/frontend\/incoming\.js([?#]|$)/.test(scripts[i].src)) {
                        src = scripts[i].src;
                    }
                }
            }
        }
        try {
            if (src) {
                return new URL('.', src).href;
            }
            return new URL('/incoming/frontend/', global.location.href).href;
        } catch (e) {
            return null;
        }
    }

    /*
     * Where the Incoming!! server is: "host", "host:port", or with a scheme,
     * "https://host:port" (a path after the host is kept as a prefix, for a
     * server behind a reverse proxy under a path). Without a scheme, the one
     * the script was loaded with is used. Never called: the server this
     * script came from.
     */
    function set_server_hostname(hostname) {
        if (hostname === undefined || hostname === null || String(hostname).trim() === '') {
            serverBase = scriptBase;
            serverBaseError = null;
            return;
        }
        var text = String(hostname).trim();
        try {
            if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
                var scheme = scriptBase ? new URL(scriptBase).protocol : global.location.protocol;
                text = scheme + '//' + text;
            }
            var url = new URL(text);
            if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.host) {
                throw new Error('not an http or https host');
            }
            serverBase = url.origin + url.pathname.replace(/\/+$/, '') + '/incoming/frontend/';
            serverBaseError = null;
        } catch (e) {
            serverBase = null;
            serverBaseError = 'set_server_hostname() got ' + JSON.stringify(String(hostname)) +
                ', which is not a host name, host:port or URL';
        }
    }

    // Outcomes of a step of an upload, thrown through its async code.

    // The step was overtaken: pause(), cancel() or a newer run took over.
    class Stale extends Error {}

    // Worth trying again later: the network, or a server that is down,
    // restarting or overloaded. `connected` says whether the server answered.
    class Retry extends Error {
        constructor(message, connected) {
            super(message);
            this.connected = connected;
        }
    }

    // The upload cannot go on.
    class Fatal extends Error {
        constructor(code, message) {
            super(message);
            this.code = code;
        }
    }

    // The server says the upload is cancelled.
    class CancelledOnServer extends Error {
        constructor(reason) {
            super(reason);
            this.reason = reason;
        }
    }

    // Uploads waiting to reconnect, woken early when the browser says it is
    // online again.
    var sleepers = new Set();
    if (typeof global.addEventListener === 'function') {
        global.addEventListener('online', function () {
            Array.from(sleepers).forEach(function (wake) { wake(); });
        });
    }

    function encodeBase64(text) {
        var bytes = new TextEncoder().encode(text);
        var binary = '';
        for (var i = 0; i < bytes.length; i++) {
            binary += String.fromCharCode(bytes[i]);
        }
        return btoa(binary);
    }

    function decodeBase64(value) {
        try {
            var binary = atob(value);
            var bytes = new Uint8Array(binary.length);
            for (var i = 0; i < binary.length; i++) {
                bytes[i] = binary.charCodeAt(i);
            }
            return new TextDecoder('utf-8', {fatal: true}).decode(bytes);
        } catch (e) {
            return null;
        }
    }

    // tus Upload-Metadata: "key base64,key base64,key".
    function encodeMetadata(metadata) {
        return Object.keys(metadata).filter(function (key) {
            return metadata[key] !== '';
        }).map(function (key) {
            return key + ' ' + encodeBase64(metadata[key]);
        }).join(',');
    }

    function parseMetadata(header) {
        var metadata = {};
        (header || '').split(',').forEach(function (pair) {
            var parts = pair.trim().split(' ');
            if (parts[0]) {
                metadata[parts[0]] = parts.length > 1 ? decodeBase64(parts[1]) : '';
            }
        });
        return metadata;
    }

    function parseCount(value) {
        if (value === null || !/^\s*\d+\s*$/.test(value)) {
            return null;
        }
        return parseInt(value, 10);
    }

    // The one-line message the server put in an error answer.
    function messageOf(xhr) {
        var text = '';
        try {
            text = (xhr.responseText || '').trim();
        } catch (e) {
            text = '';
        }
        if (text.charAt(0) === '{') {
            try {
                text = JSON.parse(text).error || text;
            } catch (e) {
                // not JSON after all: keep the text
            }
        }
        text = text.split('\n')[0];
        return text.length > 300 ? text.slice(0, 300) + '...' : text;
    }

    // Whether the browser can still read `blob`: a file changed or removed on
    // disk since it was chosen cannot be read any more, and a request that
    // sends it fails just like one that lost the network.
    function readable(blob) {
        return new Promise(function (resolve) {
            var reader = new FileReader();
            reader.onload = function () { resolve(true); };
            reader.onerror = function () { resolve(false); };
            reader.readAsArrayBuffer(blob.slice(0, Math.min(1, blob.size)));
        });
    }

    // The public property names, read-only through getters.
    var PROPERTIES = [
        'upload_id', 'filename', 'bytes_total', 'bytes_tx', 'bytes_acked', 'bytes_ahead',
        'frac_complete', 'chunks_tx_now', 'chunks_acked_now', 'chunks_ahead', 'state_msg',
        'cancel_msg', 'error_code', 'error_msg', 'connected', 'finished', 'paused',
        'can_pause', 'cancelling', 'cancelled', 'can_cancel'
    ];
    var CALLBACKS = ['onprogress', 'onfinished', 'oncancelled', 'onerror'];

    /*
     * One upload: the state the page sees and the steps that drive it.
     *
     * Every chain of asynchronous steps (a "run": start, unpause, a
     * reconnection, a cancel, a watch while paused) carries the generation
     * number it was started with. pause() and cancel() bump `gen` and abort
     * the request in flight, so whatever an older run would do next throws
     * Stale instead: there is never more than one run, and never more than
     * one request, per uploader.
     */
    class Upload {
        constructor(uploadId, file, facade) {
            this.facade = facade;
            this.ticket = (typeof uploadId === 'string' || typeof uploadId === 'number') ?
                String(uploadId).trim() : '';
            this.file = (typeof Blob !== 'undefined' && file instanceof Blob) ? file : null;
            this.fileGiven = file;
            this.upload_id = this.ticket;

            this.filename = this.file && typeof this.file.name === 'string' ? this.file.name : '';
            this.bytes_total = this.file ? this.file.size : 0;
            this.bytes_tx = 0;
            this.bytes_acked = 0;
            this.chunks_tx_now = 0;
            this.chunks_acked_now = 0;
            this.chunks_ahead = 0;
            this.state_msg = 'not yet started';
            this.cancel_msg = null;
            this.error_code = null;
            this.error_msg = null;
            this.connected = false;
            this.finished = false;
            this.paused = false;
            this.can_pause = false;
            this.cancelling = false;
            this.cancelled = false;
            this.can_cancel = true;

            this.started = false;
            this.over = false;           // finished, cancelled or failed
            this.dataDone = false;       // every byte is on the server
            this.gen = 0;
            this.xhr = null;
            this.wake = null;
            this.attempt = 0;            // failed attempts since the last good answer
            this.base = null;
            this.maxChunk = 0;           // the server's limit (Infinity: none); 0: not asked yet
            this.createWithData = false; // the server takes data with the claim (creation-with-upload)
            this.chunkSize = 0;          // the next chunk's size
            this.location = null;
        }

        get bytes_ahead() {
            return Math.max(0, this.bytes_tx - this.bytes_acked);
        }

        get frac_complete() {
            if (this.bytes_total === 0) {
                return this.dataDone ? 1 : 0;
            }
            return Math.min(1, this.bytes_acked / this.bytes_total);
        }

        get uploadsUrl() {
            return this.base + 'uploads/';
        }

        // The upload's URL: what the server answered to the claim, or (before
        // that) the same URL made from the ticket, as the upload id is the
        // ticket id.
        get url() {
            return this.location || this.uploadsUrl + encodeURIComponent(this.ticket);
        }

        // Callbacks

        emit(name) {
            var callback = this.facade[name];
            if (typeof callback !== 'function') {
                return;
            }
            try {
                callback.call(this.facade, this.facade);
            } catch (e) {
                // The page's bug, not ours: report it the way the browser
                // reports an exception in an event listener, without
                // breaking the upload.
                setTimeout(function () { throw e; }, 0);
            }
        }

        progress() {
            this.emit('onprogress');
        }

        // Bad use by the page: said through onerror, nothing else changes.
        misuse(code, message) {
            this.error_code = code;
            this.error_msg = message;
            this.emit('onerror');
        }

        // Public API

        start() {
            if (this.started || this.over || this.cancelling) {
                this.misuse(errors.ALREADY_STARTED, this.over || this.cancelling ?
                    'start(): this upload is over (' + this.state_msg + ')' :
                    'start() was already called for this upload');
                return;
            }
            this.started = true;
            if (!this.ticket) {
                this.fail(errors.NO_TICKET, 'no upload ticket: incoming.Uploader() needs the ticket id ' +
                    'the web app got from the Incoming!! server');
                return;
            }
            if (!this.file) {
                var given = this.fileGiven;
                var what = (typeof FileList !== 'undefined' && given instanceof FileList) ?
                    'a FileList (pass one element of input.files)' :
                    (given === null || given === undefined ? String(given) : 'a ' + typeof given);
                this.fail(errors.NO_FILE, 'no file: incoming.Uploader() needs a File, not ' + what);
                return;
            }
            if (!serverBase) {
                this.fail(errors.BAD_SERVER_HOSTNAME, serverBaseError || 'cannot tell where the Incoming!! ' +
                    'server is: call incoming.set_server_hostname()');
                return;
            }
            this.base = serverBase;
            this.can_pause = true;
            this.can_cancel = true;
            this.state_msg = 'connecting to the upload server';
            this.progress();
            this.launch(this.run(++this.gen));
        }

        pause(what) {
            var want;
            if (what === 'pause') {
                want = true;
            } else if (what === 'unpause') {
                want = false;
            } else if (what === 'toggle') {
                want = !this.paused;
            } else {
                this.misuse(errors.BAD_PAUSE_ARGUMENT, 'pause() takes "pause", "unpause" or "toggle", not ' +
                    JSON.stringify(what === undefined ? null : what));
                return;
            }
            if (want === this.paused) {
                return;
            }
            if (!this.can_pause) {
                this.misuse(errors.CANNOT_PAUSE_NOW, 'cannot ' + (want ? 'pause' : 'unpause') + ' now: ' +
                    (this.started ? this.state_msg : 'the upload has not been started'));
                return;
            }
            this.stop();
            if (want) {
                this.paused = true;
                this.bytes_tx = this.bytes_acked;
                this.chunks_ahead = 0;
                this.state_msg = 'paused';
                this.progress();
                this.launch(this.watchWhilePaused(this.gen));
            } else {
                this.paused = false;
                this.attempt = 0;
                this.state_msg = 'resuming';
                this.progress();
                this.launch(this.run(this.gen));
            }
        }

        cancel(reason) {
            if (this.cancelling) {
                return;
            }
            if (!this.can_cancel) {
                this.misuse(errors.CANNOT_CANCEL_NOW, 'cannot cancel now: ' + (this.over ? 'the upload is over (' +
                    this.state_msg + ')' : 'the file is already being handed over to the web app'));
                return;
            }
            reason = (reason === undefined || reason === null) ? '' :
                (typeof reason === 'symbol' ? reason.toString() : String(reason));
            if (!this.ticket || !this.file || !(this.base || serverBase)) {
                // Nothing on any server to cancel.
                this.markCancelled(reason || 'cancelled by the user');
                return;
            }
            this.base = this.base || serverBase;
            this.stop();
            this.cancelling = true;
            this.can_cancel = false;
            this.can_pause = false;
            this.paused = false;
            this.state_msg = 'cancelling' + (reason ? ': ' + reason : '');
            this.progress();
            this.launch(this.runCancel(this.gen, reason));
        }

        // Stop whatever is going on: the next run gets a new generation.
        stop() {
            this.gen++;
            if (this.xhr) {
                var xhr = this.xhr;
                this.xhr = null;
                xhr.abort();
            }
            if (this.wake) {
                this.wake();
            }
        }

        // Ends

        markFinished() {
            this.endUpload(() => {
                this.finished = true;
                this.dataDone = true;
                this.bytes_acked = this.bytes_total;
            }, 'all done', 'onfinished');
        }

        markCancelled(reason) {
            this.endUpload(() => {
                this.cancelled = true;
                this.cancel_msg = reason;
            }, 'cancelled: ' + reason, 'oncancelled');
        }

        fail(code, message) {
            this.endUpload(() => {
                this.error_code = code;
                this.error_msg = message;
            }, 'error: ' + message, 'onerror');
        }

        // The one way an upload ends (once): `outcome` sets what is
        // particular to the ending, the rest is common to all three.
        endUpload(outcome, message, callback) {
            if (this.over) {
                return;
            }
            this.stop();
            this.over = true;
            outcome();
            this.bytes_tx = this.bytes_acked;
            this.chunks_ahead = 0;
            this.connected = false;
            this.paused = false;
            this.cancelling = false;
            this.can_pause = false;
            this.can_cancel = false;
            this.state_msg = message;
            this.progress();
            this.emit(callback);
        }

        // What ends a run: a Stale outcome ends it quietly.
        end(gen, error) {
            if (gen !== this.gen || error instanceof Stale) {
                return;
            }
            if (error instanceof CancelledOnServer) {
                this.markCancelled(error.reason);
            } else if (error instanceof Fatal) {
                this.fail(error.code, error.message);
            } else {
                this.fail(errors.INTERNAL_ERROR, 'internal error in incoming.js: ' +
                    (error && error.message ? error.message : String(error)));
            }
        }

        // Runs are not awaited by anyone: whatever escapes one (only a bug
        // could) becomes error 90 instead of an unhandled rejection.
        launch(run) {
            var self = this;
            run.catch(function (error) {
                self.fail(errors.INTERNAL_ERROR, 'internal error in incoming.js: ' +
                    (error && error.message ? error.message : String(error)));
            });
        }

        check(gen) {
            if (gen !== this.gen) {
                throw new Stale();
            }
        }

        // HTTP

        /*
         * One request with XMLHttpRequest (the only browser API that reports
         * upload progress). Resolves with the xhr once any answer is in;
         * rejects with Retry when no answer came (network down, server
         * gone, timeout), or with Stale when the run was overtaken.
         */
        request(gen, method, url, options) {
            if (gen !== this.gen) {
                return Promise.reject(new Stale());
            }
            var self = this;
            options = options || {};
            return new Promise(function (resolve, reject) {
                var xhr = new XMLHttpRequest();
                var stallTimer = null;
                var stalled = false;
                function settle() {
                    if (stallTimer !== null) {
                        clearTimeout(stallTimer);
                    }
                    if (self.xhr === xhr) {
                        self.xhr = null;
                    }
                }
                function lost(why) {
                    settle();
                    if (gen !== self.gen) {
                        reject(new Stale());
                    } else {
                        self.connected = false;
                        reject(new Retry(why, false));
                    }
                }
                function armStallTimer() {
                    if (stallTimer !== null) {
                        clearTimeout(stallTimer);
                    }
                    stallTimer = setTimeout(function () {
                        stalled = true;
                        xhr.abort();
                    }, options.stall);
                }
                xhr.open(method, url, true);
                var headers = options.headers || {};
                Object.keys(headers).forEach(function (name) {
                    xhr.setRequestHeader(name, String(headers[name]));
                });
                if (options.stall) {
                    armStallTimer();
                    xhr.upload.onprogress = function (event) {
                        armStallTimer();
                        if (options.onUploadProgress && gen === self.gen) {
                            options.onUploadProgress(event.loaded);
                        }
                    };
                } else {
                    xhr.timeout = options.timeout || REQUEST_TIMEOUT;
                }
                xhr.onload = function () {
                    settle();
                    if (gen !== self.gen) {
                        reject(new Stale());
                        return;
                    }
                    self.connected = true;
                    resolve(xhr);
                };
                xhr.onerror = function () {
                    lost('the upload server cannot be reached');
                };
                xhr.ontimeout = function () {
                    lost('the upload server did not answer in time');
                };
                xhr.onabort = function () {
                    lost(stalled ? 'the connection to the upload server stalled' : 'request aborted');
                };
                self.xhr = xhr;
                xhr.send(options.body === undefined ? null : options.body);
            });
        }

        // An answer that none of the expected cases covered.
        unexpected(xhr, what) {
            var status = xhr.status;
            var message = messageOf(xhr);
            var text = what + ': HTTP ' + status + (message ? ' (' + message + ')' : '');
            if ((status >= 500 && status !== 501 && status !== 505) || status === 408 || status === 429) {
                // Down for maintenance, restarting behind a proxy, disk full
                // (507: resumable by design), overloaded: try again later.
                return new Retry('server trouble: ' + text, true);
            }
            return new Fatal(errors.SERVER_REFUSED, text);
        }

        // After 410 Gone: the upload was cancelled (not an error) or failed
        // (its handover); the state URL tells which, and why.
        async gone(gen) {
            return this.goneAs(await this.state(gen, ''));
        }

        goneAs(state) {
            if (state.state === 'cancelled') {
                return new CancelledOnServer(state.cancelReason || 'cancelled');
            }
            if (state.state === 'failed') {
                return new Fatal(errors.HANDOVER_FAILED, 'the server could not hand the file over to the web app' +
                    (state.cancelReason ? ': ' + state.cancelReason : ''));
            }
            return new Fatal(errors.SERVER_REFUSED, 'the server says the upload is gone, yet its state is ' +
                state.state);
        }

        // Runs

        run(gen) {
            return this.retrying(gen, () => this.session(gen));
        }

        // Call `attempt` until it returns. After a Retry it is called
        // again once the backoff is over; any other error, or a Retry of a
        // generation that is no longer current, ends the run.
        async retrying(gen, attempt) {
            for (;;) {
                try {
                    await attempt();
                    return;
                } catch (error) {
                    if (!(error instanceof Retry) || gen !== this.gen) {
                        this.end(gen, error);
                        return;
                    }
                    try {
                        await this.backoff(gen, error);
                    } catch (stale) {
                        return;
                    }
                }
            }
        }

        // Wait before the next attempt, saying why in state_msg.
        async backoff(gen, error) {
            this.attempt++;
            var delay = Math.min(RETRY_MAX, RETRY_FIRST * Math.pow(2, this.attempt - 1));
            delay = Math.round(delay * (0.5 + Math.random() / 2));
            this.connected = error.connected;
            this.bytes_tx = this.bytes_acked;
            this.chunks_ahead = 0;
            if (!this.paused) {
                this.state_msg = error.message + '; trying again in ' + Math.ceil(delay / 1000) + ' s';
            }
            this.progress();
            await this.sleep(delay);
            this.check(gen);
        }

        sleep(ms) {
            var self = this;
            return new Promise(function (resolve) {
                var timer = null;
                function wake() {
                    clearTimeout(timer);
                    sleepers.delete(wake);
                    if (self.wake === wake) {
                        self.wake = null;
                    }
                    resolve();
                }
                timer = setTimeout(wake, ms);
                sleepers.add(wake);
                self.wake = wake;
            });
        }

        /*
         * Connect (again) and take the upload as far as it goes: learn the
         * chunk size, claim the ticket (its answer says the server's offset;
         * once claimed, a HEAD asks it), send the rest of the file, then
         * follow the handover until the backend has the file. Each call is
         * a new "connection" for the per-connection chunk counters.
         */
        async session(gen) {
            this.chunks_tx_now = 0;
            this.chunks_acked_now = 0;
            this.chunks_ahead = 0;
            if (!(await readable(this.file))) {
                throw this.unreadable();
            }
            this.check(gen);
            if (!this.maxChunk) {
                await this.discover(gen);
            }
            // A new connection may be slower than the last one: start small.
            this.chunkSize = Math.min(FIRST_CHUNK, this.maxChunk);
            var offset = null;
            if (!this.location) {
                offset = await this.claim(gen);
            }
            for (;;) {
                if (offset === null) {
                    offset = await this.head(gen);
                }
                if (offset < this.bytes_total) {
                    await this.send(gen, offset, false);
                }
                if (await this.follow(gen)) {
                    return;
                }
                offset = null;
            }
        }

        unreadable() {
            return new Fatal(errors.FILE_UNREADABLE, 'the browser cannot read the file ' +
                JSON.stringify(this.filename) + ' any more: it was changed or removed after it was chosen');
        }

        // OPTIONS: is this a tus server, and what is its largest chunk?
        async discover(gen) {
            var xhr = await this.request(gen, 'OPTIONS', this.uploadsUrl);
            if (xhr.status < 200 || xhr.status >= 300) {
                throw this.unexpected(xhr, 'OPTIONS ' + this.uploadsUrl);
            }
            var versions = (xhr.getResponseHeader('Tus-Version') || '').split(',').map(function (v) {
                return v.trim();
            });
            if (versions.indexOf(TUS_VERSION) < 0) {
                throw new Fatal(errors.SERVER_REFUSED, this.uploadsUrl + ' is not an Incoming!! server ' +
                    '(it does not speak tus ' + TUS_VERSION + ')');
            }
            var limit = parseCount(xhr.getResponseHeader('Incoming-Chunk-Size'));
            this.maxChunk = limit > 0 ? limit : Infinity;
            var extensions = (xhr.getResponseHeader('Tus-Extension') || '').split(',').map(function (e) {
                return e.trim();
            });
            this.createWithData = extensions.indexOf('creation-with-upload') >= 0;
        }

        /*
         * POST: claim the ticket. Claiming again with the same length (after
         * a lost answer, or from a reloaded page) gives the same upload.
         *
         * A file that goes in one chunk goes with the claim
         * (creation-with-upload): the whole upload is then one request
         * instead of two (POST, PATCH), which counts for many small
         * files and on long round trips. A larger file is claimed first, so
         * that a reloaded page does not send its first chunk again for
         * nothing: the server keeps the data it has and drops what comes
         * with a repeated claim. Resolves with the server's offset (see
         * claimed).
         */
        async claim(gen) {
            var headers = {
                'Tus-Resumable': TUS_VERSION,
                'Upload-Length': this.bytes_total,
                'Upload-Metadata': encodeMetadata({
                    ticket: this.ticket,
                    filename: this.filename,
                    filetype: this.file.type || '',
                    // Lets a later uploader (after a page reload) tell
                    // whether it was given the same file.
                    lastModified: typeof this.file.lastModified === 'number' ?
                        String(this.file.lastModified) : ''
                })
            };
            var withData = this.createWithData && this.bytes_total > 0 && this.chunkEnd(0) === this.bytes_total;
            var began = Date.now();
            var xhr = withData ?
                await this.requestChunk(gen, 'POST', this.uploadsUrl, headers, 0, this.bytes_total) :
                await this.request(gen, 'POST', this.uploadsUrl, {headers: headers});
            var message = messageOf(xhr);
            switch (xhr.status) {
            case 200:
            case 201:
                var location = xhr.getResponseHeader('Location');
                if (!location) {
                    throw new Fatal(errors.SERVER_REFUSED, 'the server claimed the ticket but did not say ' +
                        'where the upload is (no Location header readable; check CORS)');
                }
                this.location = new URL(location, this.uploadsUrl).href;
                return this.claimed(gen, xhr, withData ? began : null);
            case 403:
                throw new Fatal(errors.TICKET_UNKNOWN, 'the server does not know this upload ticket' +
                    (message ? ': ' + message : ''));
            case 409:
                throw new Fatal(errors.TICKET_USED, 'this ticket is already used for another file' +
                    (message ? ': ' + message : ''));
            case 410:
                throw await this.gone(gen);
            case 413:
                throw new Fatal(errors.FILE_TOO_LARGE, 'the file is too large' + (message ? ': ' + message : ''));
            default:
                throw this.unexpected(xhr, 'claiming the ticket');
            }
        }

        /*
         * The answer to a claim, which says the server's offset as a HEAD
         * would: after a claim that carried the whole file (sent at
         * `began`), the server took it, or (a repeated claim) kept what it
         * had. Either way the upload must be this file's, as after a HEAD.
         * Resolves with the offset, or with null from a server that does
         * not say it after a claim without data (ask with HEAD).
         */
        claimed(gen, xhr, began) {
            if (began === null && parseCount(xhr.getResponseHeader('Upload-Offset')) === null) {
                return null;
            }
            var offset = this.offsetOf(xhr, 'the server did not say the upload offset');
            var metadata = parseMetadata(xhr.getResponseHeader('Upload-Metadata'));
            if (!this.ownFile(this.bytes_total, metadata)) {
                throw this.usedForAnother(this.bytes_total, metadata);
            }
            if (began !== null && offset >= this.bytes_total) {
                this.chunkAcked(gen, 0, offset, began);
            } else {
                this.adopt(gen, offset);
            }
            return offset;
        }

        // HEAD: where does the server stand? This is where a connection
        // counts as re-established.
        async head(gen) {
            var xhr = await this.request(gen, 'HEAD', this.url, {headers: {'Tus-Resumable': TUS_VERSION}});
            switch (xhr.status) {
            case 200:
                break;
            case 404:
                throw new Fatal(errors.TICKET_UNKNOWN, 'the server does not know this upload any more ' +
                    '(the ticket expired or was removed)');
            case 410:
                throw await this.gone(gen);
            default:
                throw this.unexpected(xhr, 'HEAD ' + this.url);
            }
            var offset = this.offsetOf(xhr, 'the server did not say the upload offset');
            var length = parseCount(xhr.getResponseHeader('Upload-Length'));
            var metadata = parseMetadata(xhr.getResponseHeader('Upload-Metadata'));
            if (!this.ownFile(length, metadata)) {
                throw this.usedForAnother(length, metadata);
            }
            this.adopt(gen, offset);
            return offset;
        }

        // Upload-Offset of an answer.
        offsetOf(xhr, missing) {
            var offset = parseCount(xhr.getResponseHeader('Upload-Offset'));
            if (offset === null) {
                throw new Fatal(errors.SERVER_REFUSED, missing + ' (no Upload-Offset header readable; check CORS)');
            }
            return offset;
        }

        // Whether the server's upload (its length and metadata) is this
        // file: a reloaded page may have been given another one for the
        // same ticket.
        ownFile(length, metadata) {
            return (length === null || length === this.bytes_total) &&
                (!metadata.filename || !this.filename || metadata.filename === this.filename) &&
                (!metadata.lastModified || typeof this.file.lastModified !== 'number' ||
                    metadata.lastModified === String(this.file.lastModified));
        }

        usedForAnother(length, metadata) {
            return new Fatal(errors.TICKET_USED, 'this ticket is already used for another file (' +
                JSON.stringify(metadata.filename || '') + ', ' + length + ' bytes)');
        }

        // Go on from the server's offset (a connection is re-established).
        adopt(gen, offset) {
            this.attempt = 0;
            this.bytes_acked = Math.min(offset, this.bytes_total);
            this.bytes_tx = this.bytes_acked;
            this.chunks_ahead = 0;
            this.dataDone = offset >= this.bytes_total;
            if (!this.dataDone) {
                this.state_msg = 'uploading';
            }
            this.progress();
            this.check(gen);
        }

        /*
         * Where a chunk from `offset` ends: chunkSize bytes on, or the end
         * of the file when the rest after that is smaller than a chunk (a
         * short last PATCH costs a request of its own for little data),
         * unless that passes the server's limit.
         */
        chunkEnd(offset) {
            var end = Math.min(this.bytes_total, offset + this.chunkSize);
            if (this.bytes_total - end < this.chunkSize && this.bytes_total - offset <= this.maxChunk) {
                end = this.bytes_total;
            }
            return end;
        }

        /*
         * Send the file's bytes from `start` to `end` as the body of a
         * request (a PATCH, or the claim), with upload progress (bytes_tx)
         * and the stall timeout; resolves with the xhr.
         */
        async requestChunk(gen, method, url, headers, start, end) {
            var self = this;
            this.state_msg = 'uploading';
            this.chunks_tx_now++;
            this.chunks_ahead = 1;
            this.bytes_tx = start;
            this.progress();
            try {
                var xhr = await this.request(gen, method, url, {
                    headers: Object.assign({'Content-Type': OFFSET_CONTENT_TYPE}, headers),
                    body: this.file.slice(start, end),
                    stall: STALL_TIMEOUT,
                    onUploadProgress: function (loaded) {
                        var sent = Math.min(end, start + loaded);
                        if (sent !== self.bytes_tx) {
                            self.bytes_tx = sent;
                            self.progress();
                        }
                    }
                });
            } catch (error) {
                if (error instanceof Retry && !(await readable(this.file))) {
                    throw this.unreadable();
                }
                throw error;
            }
            this.chunks_ahead = 0;
            return xhr;
        }

        // The server confirmed a chunk sent from `start` at `began`: it has
        // `next` bytes now.
        chunkAcked(gen, start, next, began) {
            this.chunks_acked_now++;
            this.attempt = 0;
            // The next chunk: what this one's rate sends in CHUNK_SECONDS,
            // within the bounds (see FIRST_CHUNK).
            var rate = (next - start) / Math.max(1, Date.now() - began) * 1000;
            this.chunkSize = Math.min(this.maxChunk, Math.max(FIRST_CHUNK, Math.round(rate * CHUNK_SECONDS)));
            this.bytes_acked = Math.min(next, this.bytes_total);
            this.bytes_tx = this.bytes_acked;
            this.dataDone = next >= this.bytes_total;
            this.progress();
            this.check(gen);
        }

        /*
         * PATCH the file from `offset` on, one chunk per request, until the
         * server has it all. With `once`, send one (maybe empty) chunk even
         * if the offset is already at the end: the server starts the
         * handover only when a request has stored the last byte, and an
         * empty file has no byte.
         */
        async send(gen, offset, once) {
            var checksumFailures = 0;
            this.state_msg = 'uploading';
            while (offset < this.bytes_total || once) {
                once = false;
                var start = offset;
                var began = Date.now();
                var xhr = await this.requestChunk(gen, 'PATCH', this.url, {
                    'Tus-Resumable': TUS_VERSION,
                    'Upload-Offset': start
                }, start, this.chunkEnd(start));
                switch (xhr.status) {
                case 200:
                case 204:
                    var next = this.offsetOf(xhr, 'the server did not say the new upload offset');
                    this.chunkAcked(gen, start, next, began);
                    offset = next;
                    break;
                case 409:
                    // Another offset on the server (a request we gave up on
                    // still got bytes in): ask, and go on from there.
                    offset = await this.head(gen);
                    break;
                case 404:
                    throw new Fatal(errors.TICKET_UNKNOWN, 'the server does not know this upload any more ' +
                        '(the ticket expired or was removed)');
                case 410:
                    throw await this.gone(gen);
                case 460:
                    // The server got other bytes than we sent; send again.
                    if (++checksumFailures > 3) {
                        throw new Fatal(errors.SERVER_REFUSED, 'the chunk at offset ' + start +
                            ' kept arriving damaged');
                    }
                    offset = await this.head(gen);
                    break;
                default:
                    throw this.unexpected(xhr, 'sending the chunk at offset ' + start);
                }
            }
        }

        // GET the upload's state; with `known`, the server answers once the
        // state is another one (or after STATE_WAIT seconds).
        async state(gen, known) {
            var url = this.url + '/state' + (known ?
                '?known=' + encodeURIComponent(known) + '&wait=' + STATE_WAIT : '');
            var xhr = await this.request(gen, 'GET', url, {
                timeout: known ? REQUEST_TIMEOUT + STATE_WAIT * 1000 : REQUEST_TIMEOUT
            });
            if (xhr.status === 404) {
                throw new Fatal(errors.TICKET_UNKNOWN, 'the server does not know this upload any more ' +
                    '(the ticket expired or was removed)');
            }
            if (xhr.status !== 200) {
                throw this.unexpected(xhr, 'GET ' + url);
            }
            var state;
            try {
                state = JSON.parse(xhr.responseText);
            } catch (e) {
                throw new Fatal(errors.SERVER_REFUSED, 'the upload state from ' + url + ' is not JSON');
            }
            if (!state || typeof state.state !== 'string') {
                throw new Fatal(errors.SERVER_REFUSED, 'the upload state from ' + url + ' has no state');
            }
            return state;
        }

        /*
         * All bytes are sent: follow the upload's state until the backend has
         * taken the file (true), or find that the server lacks bytes after
         * all (false: send them).
         */
        async follow(gen) {
            var known = '';
            var nudges = 0;
            for (;;) {
                var state = await this.state(gen, known);
                this.check(gen);
                switch (state.state) {
                case 'finished':
                    this.markFinished();
                    return true;
                case 'cancelled':
                    throw new CancelledOnServer(state.cancelReason || 'cancelled');
                case 'failed':
                    throw this.goneAs(state);
                case 'handing_over':
                    this.handingOver('the upload server is handing the file over to the web app');
                    break;
                case 'awaiting_confirmation':
                    this.handingOver('waiting for the web app to take the file');
                    break;
                case 'receiving':
                case 'ticketed':
                    if (state.offset < this.bytes_total) {
                        return false;
                    }
                    // Every byte is there but no request has completed the
                    // upload (an empty file; or an answer lost with the
                    // connection while the server was finishing): an empty
                    // PATCH at the end does it.
                    if (++nudges > 3) {
                        throw new Retry('the upload server does not complete the upload', true);
                    }
                    await this.send(gen, state.offset, true);
                    known = '';
                    continue;
                default:
                    throw new Fatal(errors.SERVER_REFUSED, 'unknown upload state ' + JSON.stringify(state.state));
                }
                known = state.state;
            }
        }

        handingOver(message) {
            this.dataDone = true;
            this.bytes_acked = this.bytes_tx = this.bytes_total;
            this.can_pause = false;
            this.can_cancel = false;
            if (this.state_msg !== message) {
                this.state_msg = message;
                this.progress();
            }
        }

        /*
         * While paused nothing is sent, but a long-poll on the state URL
         * notices when the backend (or a timeout) cancels the upload.
         */
        async watchWhilePaused(gen) {
            return this.retrying(gen, () => this.watchPaused(gen));
        }

        // One connection's long-polls while paused, until the upload is
        // handed over or gone.
        async watchPaused(gen) {
            var known = '';
            for (;;) {
                var state = await this.state(gen, known);
                this.check(gen);
                if (this.attempt) {
                    this.attempt = 0;
                    this.progress();  // connected again
                }
                if (state.state === 'cancelled' || state.state === 'failed') {
                    throw this.goneAs(state);
                }
                if (state.state !== 'ticketed' && state.state !== 'receiving') {
                    // The last bytes arrived just before the pause: there is
                    // nothing left to pause, only the handover to follow.
                    this.stop();
                    this.paused = false;
                    this.progress();
                    this.launch(this.run(this.gen));
                    return;
                }
                known = state.state;
            }
        }

        // The last bytes arrived before the cancel: the handover is under
        // way (or done). Say so, and follow it to its end.
        tooLateToCancel() {
            this.stop();
            this.started = true;
            this.cancelling = false;
            this.misuse(errors.CANNOT_CANCEL_NOW, 'too late to cancel: the file is already being ' +
                'handed over to the web app');
            this.state_msg = 'the upload server is handing the file over to the web app';
            this.progress();
            this.launch(this.run(this.gen));
        }

        // DELETE the upload; the backend is told with `reason`.
        runCancel(gen, reason) {
            return this.retrying(gen, () => this.cancelOnce(gen, reason));
        }

        // One DELETE, and what its answer means.
        async cancelOnce(gen, reason) {
            var url = this.url + (reason ? '?reason=' + encodeURIComponent(reason) : '');
            var xhr = await this.request(gen, 'DELETE', url, {headers: {'Tus-Resumable': TUS_VERSION}});
            switch (xhr.status) {
            case 200:
            case 204:
                // tus lets a server answer 204 to the DELETE of a
                // completed upload too: the state tells what happened.
                var state = await this.state(gen, '');
                if (state.state === 'cancelled' || state.state === 'failed') {
                    throw this.goneAs(state);
                }
                if (state.state === 'ticketed' || state.state === 'receiving') {
                    throw new Retry('the upload server has not cancelled the upload yet', true);
                }
                this.tooLateToCancel();
                return;
            case 404:
                throw new Fatal(errors.TICKET_UNKNOWN, 'the server does not know this upload ' +
                    '(the ticket expired or was removed)');
            case 409:
                this.tooLateToCancel();
                return;
            case 410:
                throw await this.gone(gen);
            default:
                throw this.unexpected(xhr, 'cancelling the upload');
            }
        }
    }

    /*
     * incoming.Uploader(upload_id, file): an uploader for one File. Works
     * with or without `new`. Its properties are read-only views of the
     * upload; set the callbacks, then call start().
     */
    function Uploader(upload_id, file) {
        var uploader = Object.create(Uploader.prototype);
        var upload = new Upload(upload_id, file, uploader);
        PROPERTIES.forEach(function (name) {
            Object.defineProperty(uploader, name, {
                enumerable: true,
                get: function () { return upload[name]; }
            });
        });
        CALLBACKS.forEach(function (name) {
            uploader[name] = null;
        });
        // The public functions never throw: whatever goes wrong is reported
        // through onerror.
        function guarded(action) {
            return function () {
                try {
                    action.apply(upload, arguments);
                } catch (error) {
                    upload.fail(errors.INTERNAL_ERROR, 'internal error in incoming.js: ' +
                        (error && error.message ? error.message : String(error)));
                }
                return uploader;
            };
        }
        uploader.start = guarded(upload.start);
        uploader.pause = guarded(upload.pause);
        uploader.cancel = guarded(upload.cancel);
        return uploader;
    }

    global.incoming = {
        Uploader: Uploader,
        set_server_hostname: set_server_hostname,
        errors: errors
    };
}(typeof window !== 'undefined' ? window : this));

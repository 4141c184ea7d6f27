/*
 * rocket.js: the browser client of rocketd's WebRocket frontend.
 *
 * No dependencies. Served by the daemon at /static/rocket.js.
 *
 *   var rocket = new Rocket("ws://127.0.0.1:8080/moon")
 *     .auth(function () { return fetch("/my-backend/token").then(function (r) { return r.text(); }); })
 *     .subscribe("presence-room", {
 *       ":subscribed": function (body) { ... body.subscribers ... },
 *       ":memberJoined": function (member) { ... },
 *       ":memberLeft": function (member) { ... },
 *       "message": function (data) { ... data.sid, data.channel ... }
 *     }, {data: {name: "joe"}});
 *   rocket.broadcast("presence-room", "message", {text: "hi"});
 *   rocket.trigger("hello", {n: 1}, "presence-room");
 *   rocket.on(":error", function (error) { ... error.code, error.status ... });
 *
 * The connection comes back by itself: after an unexpected close, the client
 * waits (0.5 s, doubling up to 30 s, with jitter), connects again,
 * authenticates again and subscribes again to every channel it was
 * subscribed to. Browser tokens are single-use: give auth() a function that
 * gets a new token (a string, or a Promise of one) when the connection
 * comes back; a token given as a string is used once.
 *
 * Protocol reference: docs/webrocket.md ("Frontend") in the rocketd sources.
 */
(function (root) {
  "use strict";

  var MAX_WAITING = 1000;

  function Rocket(url, options) {
    if (!(this instanceof Rocket)) {
      return new Rocket(url, options);
    }
    options = options || {};
    this.url = url;
    this.minDelay = options.minDelay || 500;
    this.maxDelay = options.maxDelay || 30000;
    this.reconnect = options.reconnect !== false;
    this.sid = null;
    this.uid = null;
    this.state = "connecting";
    this._WebSocket = options.WebSocket || root.WebSocket;
    this._channels = {};
    this._listeners = {};
    this._waiting = [];
    this._token = null;
    this._ready = false;
    this._attempt = 0;
    this._closedByUser = false;
    this._timer = null;
    this._socket = null;
    this._open();
  }

  // -- events ---------------------------------------------------------------

  /*
   * Listen to an event: any server event by name (":connected",
   * ":authenticated", ":error", ":subscribed", ":memberJoined", ... or an
   * application event such as "message", whatever its channel), and
   * "open", "close" ({code, reason, retryIn}) and "frame" (direction "in"
   * or "out", the frame's text).
   */
  Rocket.prototype.on = function (name, listener) {
    (this._listeners[name] = this._listeners[name] || []).push(listener);
    return this;
  };

  Rocket.prototype.off = function (name, listener) {
    var listeners = this._listeners[name] || [];
    var i = listeners.indexOf(listener);
    if (i >= 0) {
      listeners.splice(i, 1);
    }
    return this;
  };

  Rocket.prototype._emit = function (name) {
    var args = Array.prototype.slice.call(arguments, 1);
    var listeners = (this._listeners[name] || []).slice();
    for (var i = 0; i < listeners.length; i++) {
      try {
        listeners[i].apply(this, args);
      } catch (e) {
        if (root.console) {
          root.console.error(e);
        }
      }
    }
  };

  // -- requests -------------------------------------------------------------

  /* Authenticate with a single-use token: a string, or a function giving one (or a Promise of one). */
  Rocket.prototype.auth = function (token) {
    this._token = token;
    if (this._ready) {
      this._authenticate();
    }
    return this;
  };

  /*
   * Subscribe to a channel. handlers: event name -> function(body), for the
   * channel's events and its server events (":subscribed",
   * ":unsubscribed", ":memberJoined", ":memberLeft", ":channelClosed").
   * options: {data: {...}, hidden: bool}.
   */
  Rocket.prototype.subscribe = function (channel, handlers, options) {
    options = options || {};
    this._channels[channel] = {
      handlers: handlers || {},
      data: options.data,
      hidden: !!options.hidden
    };
    this._send({subscribe: this._subscription(channel)});
    return this;
  };

  Rocket.prototype._subscription = function (channel) {
    var entry = this._channels[channel];
    var body = {channel: channel};
    if (entry.data !== undefined) {
      body.data = entry.data;
    }
    if (entry.hidden) {
      body.hidden = true;
    }
    return body;
  };

  Rocket.prototype.unsubscribe = function (channel, data) {
    delete this._channels[channel];
    var body = {channel: channel};
    if (data !== undefined) {
      body.data = data;
    }
    this._send({unsubscribe: body});
    return this;
  };

  /* Send an event to every subscriber of a channel (this client included); trigger: also to the backend. */
  Rocket.prototype.broadcast = function (channel, event, data, trigger) {
    var body = {channel: channel, event: event, data: data || {}};
    if (trigger) {
      body.trigger = trigger;
    }
    this._send({broadcast: body});
    return this;
  };

  /* Send an event to the backend's workers (needs auth). */
  Rocket.prototype.trigger = function (event, data, channel) {
    var body = {event: event, data: data || {}};
    if (channel) {
      body.channel = channel;
    }
    this._send({trigger: body});
    return this;
  };

  /* Close for good (no reconnection). */
  Rocket.prototype.close = function () {
    this._closedByUser = true;
    clearTimeout(this._timer);
    if (this._socket && this._socket.readyState <= 1) {
      this._socket.close(1000);
    }
    this.state = "closed";
    return this;
  };

  // -- the connection ---------------------------------------------------------

  Rocket.prototype._open = function () {
    var self = this;
    var socket;
    this._ready = false;
    this.state = "connecting";
    try {
      socket = new this._WebSocket(this.url);
    } catch (e) {
      this._closed({code: 1006, reason: String(e)});
      return;
    }
    this._socket = socket;
    socket.onopen = function () {
      self._emit("open");
    };
    socket.onmessage = function (event) {
      if (self._socket === socket) {
        self._received(event.data);
      }
    };
    socket.onclose = function (event) {
      if (self._socket === socket) {
        self._socket = null;
        self._closed(event);
      }
    };
  };

  Rocket.prototype._closed = function (event) {
    this._ready = false;
    this.sid = null;
    var retryIn = null;
    if (!this._closedByUser && this.reconnect) {
      var delay = Math.min(this.maxDelay, this.minDelay * Math.pow(2, this._attempt));
      retryIn = Math.round(delay * (0.5 + Math.random() / 2));
      this._attempt += 1;
      this.state = "waiting";
      var self = this;
      this._timer = setTimeout(function () {
        self._open();
      }, retryIn);
    } else {
      this.state = "closed";
    }
    this._emit("close", {code: event.code, reason: event.reason, retryIn: retryIn});
  };

  Rocket.prototype._write = function (message) {
    var text = JSON.stringify(message);
    this._socket.send(text);
    this._emit("frame", "out", text);
  };

  Rocket.prototype._send = function (message) {
    if (this._ready && this._socket) {
      this._write(message);
      return;
    }
    // Subscriptions are sent again when the connection comes back.
    if (message.subscribe || message.unsubscribe) {
      return;
    }
    this._waiting.push(message);
    if (this._waiting.length > MAX_WAITING) {
      this._waiting.shift();
    }
  };

  /* The server greeted us: authenticate, subscribe again, send what waited. */
  Rocket.prototype._start = function () {
    var self = this;
    var socket = this._socket;
    var token = this._token;
    var gotToken;
    if (typeof token === "function") {
      try {
        gotToken = Promise.resolve(token());
      } catch (e) {
        gotToken = Promise.reject(e);
      }
    } else {
      gotToken = Promise.resolve(token);
      this._token = null; // single-use
    }
    gotToken.then(
      function (value) {
        return value;
      },
      function (error) {
        self._emit("error", {code: 0, status: "Could not get a token: " + error});
        return null;
      }
    ).then(function (value) {
      if (self._socket !== socket) {
        return;
      }
      if (value) {
        self._write({auth: {token: value}});
      }
      self._ready = true;
      for (var channel in self._channels) {
        if (Object.prototype.hasOwnProperty.call(self._channels, channel)) {
          self._write({subscribe: self._subscription(channel)});
        }
      }
      var waiting = self._waiting;
      self._waiting = [];
      for (var i = 0; i < waiting.length; i++) {
        self._write(waiting[i]);
      }
    });
  };

  Rocket.prototype._authenticate = function () {
    var token = this._token;
    var self = this;
    if (typeof token !== "function") {
      this._token = null;
    }
    Promise.resolve(typeof token === "function" ? token() : token).then(function (value) {
      if (value && self._ready) {
        self._write({auth: {token: value}});
      }
    });
  };

  Rocket.prototype._received = function (text) {
    this._emit("frame", "in", text);
    var message;
    try {
      message = JSON.parse(text);
    } catch (e) {
      return;
    }
    var name = Object.keys(message)[0];
    var body = message[name] || {};
    if (name === ":connected") {
      this.sid = body.sid;
      this.state = "open";
      this._attempt = 0;
      this._start();
    } else if (name === ":subscribed" && body.uid !== undefined) {
      this.uid = body.uid;
    }
    var entry = body && typeof body.channel === "string" ? this._channels[body.channel] : undefined;
    if (name === ":channelClosed") {
      delete this._channels[body.channel];
    }
    if (entry && typeof entry.handlers[name] === "function") {
      try {
        entry.handlers[name].call(this, body);
      } catch (e) {
        if (root.console) {
          root.console.error(e);
        }
      }
    }
    this._emit(name, body);
  };

  root.Rocket = Rocket;
  if (typeof module === "object" && module.exports) {
    module.exports = Rocket;
  }
})(typeof window !== "undefined" ? window : this);

;;; completer.el --- Ghost text and menus from `completer serve' over eglot  -*- lexical-binding: t -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: convenience, languages

;;; Commentary:

;; completer (a local character-level model of code) as grey ghost text after the point, and its
;; completion menu in the order of the model's probabilities, in Emacs with eglot:
;;
;;   (add-to-list 'load-path "/path/to/completer/plugins/emacs")
;;   (require 'completer)
;;   (completer-eglot-setup)   ; `completer serve' for python-mode, and `completer-mode' in its buffers
;;
;; then `M-x eglot' in a Python buffer (or `eglot-ensure' in `python-mode-hook').
;;
;; Ghost text: after you stop typing for `completer-idle-delay' seconds, `completer-mode' asks the
;; server for `textDocument/inlineCompletion' over eglot's own connection (an asynchronous
;; request, so typing never waits for it) and shows the first item in an overlay.  TAB inserts
;; it (TAB does what it did before when none is shown), any other command dismisses it, and
;; each new request cancels the one in flight (`$/cancelRequest').
;;
;; Menus: eglot puts its completions in the `eglot' completion category with the `flex' style,
;; and `flex' re-sorts candidates by how much of each one the typed text covers, so a short,
;; unlikely item ("heads", 0.4%) came before a likely long one ("headers", 54.5%) in
;; `completion-at-point' and in company.  `completer-mode' makes that category use the
;; `basic' (prefix) style in its buffers, so eglot's sort by the server's `sortText', which is
;; the model's order, is the order shown.
;;
;; Settings (see completer's docs/protocol.md), e.g. hiding menu items the model gives
;; less than 1%:  (setq-default eglot-workspace-configuration '(:completer (:threshold 0.01)))
;;
;; lsp-mode: `(completer-lsp-mode-setup)' registers `completer serve' as an add-on client for
;; Python (beside your usual server): the menu, in the model's order; ghost text needs eglot.
;; Settings: (lsp-register-custom-settings '(("completer.threshold" 0.01))).

;;; Code:

(require 'cl-lib)
(require 'jsonrpc)
(require 'eglot)

(defgroup completer nil
  "Ghost-text completion from a local character-level model."
  :group 'completion
  :prefix "completer-")

(defcustom completer-command '("completer" "serve")
  "The server command: `completer serve' and its options (e.g. \"--model\" PATH)."
  :type '(repeat string))

(defcustom completer-idle-delay 0.05
  "Seconds of idle time after a change before asking for ghost text."
  :type 'number)

(defcustom completer-modes '(python-mode)
  "Major modes `completer-eglot-setup' registers the server for."
  :type '(repeat symbol))

(defface completer-ghost '((t :inherit shadow))
  "Face of the ghost text.")

(defvar completer-mode)  ; defined below by `define-minor-mode'
(declare-function lsp-register-client "lsp-mode")
(declare-function make-lsp-client "lsp-mode")
(declare-function lsp-stdio-connection "lsp-mode")
(declare-function lsp-activate-on "lsp-mode")
(declare-function lsp--set-configuration "lsp-mode")
(declare-function lsp-configuration-section "lsp-mode")
(defvar lsp--cur-workspace)

(defvar-local completer--overlay nil "The overlay showing the ghost text, or nil.")
(defvar-local completer--text nil "The ghost text shown, or nil.")
(defvar-local completer--timer nil "The idle timer of the next request.")
(defvar-local completer--pending nil "(SERVER . ID) of the request in flight.")
(defvar-local completer--generation 0 "Counts requests; an answer to an older one is dropped.")

;;;; Ghost text

(defun completer-clear ()
  "Remove the ghost text."
  (when completer--overlay
    (delete-overlay completer--overlay))
  (setq completer--overlay nil completer--text nil))

(defun completer--show (text)
  "Show TEXT as ghost text at point."
  (completer-clear)
  (let ((ov (make-overlay (point) (point) nil t nil))
        (shown (propertize text 'face 'completer-ghost)))
    (put-text-property 0 1 'cursor t shown)  ; the cursor stays before the ghost text
    (overlay-put ov 'after-string shown)
    (overlay-put ov 'completer t)
    (setq completer--overlay ov completer--text text)))

(defun completer-accept ()
  "Insert the ghost text."
  (interactive)
  (when completer--text
    (let ((text completer--text))
      (completer-clear)
      (insert text))))

(defun completer--accept-filter (cmd)
  "CMD when ghost text is shown, else nil (so TAB keeps its usual binding)."
  (and completer--text (overlayp completer--overlay)
       (= (point) (overlay-start completer--overlay))
       cmd))

(defvar completer-mode-map
  (let ((map (make-sparse-keymap)))
    (dolist (key (list (kbd "TAB") (kbd "<tab>")))
      (define-key map key `(menu-item "" completer-accept :filter completer--accept-filter)))
    map)
  "Keys of `completer-mode': TAB accepts the ghost text when it is shown.")

(defun completer--cancel ()
  "Cancel the request in flight, if any."
  (when completer--pending
    (let ((server (car completer--pending)) (id (cdr completer--pending)))
      (setq completer--pending nil)
      (when (and id (jsonrpc-running-p server))
        (jsonrpc-notify server :$/cancelRequest (list :id id))))))

(defun completer--item-text (item)
  "The text an inlineCompletion ITEM inserts."
  (let ((text (plist-get item :insertText)))
    (cond ((stringp text) text)
          ((consp text) (or (plist-get text :value) ""))
          (t ""))))

(defun completer--request ()
  "Ask the server for ghost text at point (asynchronously)."
  (setq completer--timer nil)
  (let ((server (eglot-current-server)))
    (when (and server (jsonrpc-running-p server) (not completer--text) (not (region-active-p)))
      (completer--cancel)
      ;; eglot sends changes after `eglot-send-changes-idle-time'; the server needs them now
      (eglot--signal-textDocument/didChange)
      (let* ((buffer (current-buffer))
             (generation (cl-incf completer--generation))
             (at (point))
             (tick (buffer-chars-modified-tick))
             (params (append (eglot--TextDocumentPositionParams) '(:context (:triggerKind 2))))
             (fresh (lambda ()
                      (and (buffer-live-p buffer)
                           (with-current-buffer buffer
                             (and completer-mode (= generation completer--generation)
                                  (= at (point)) (= tick (buffer-chars-modified-tick))
                                  (eq buffer (window-buffer (selected-window)))))))))
        ;; jsonrpc--async-request-1 is `jsonrpc-async-request' returning (ID TIMER): the id
        ;; is what `$/cancelRequest' needs
        (let ((sent (funcall (if (fboundp 'jsonrpc--async-request-1) #'jsonrpc--async-request-1
                               #'jsonrpc-async-request)
                     server :textDocument/inlineCompletion params
                     :success-fn
                     (lambda (result)
                       (when (funcall fresh)
                         (with-current-buffer buffer
                           (setq completer--pending nil)
                           (let* ((items (if (vectorp result) result (plist-get result :items)))
                                  (text (and items (> (length items) 0)
                                             (completer--item-text (aref items 0)))))
                             (when (and text (not (string-empty-p text)))
                               (completer--show text))))))
                     :error-fn (lambda (_err) nil)       ; cancelled (-32800) or failed: no ghost
                     :timeout-fn (lambda () nil))))
          (setq completer--pending (cons server (car-safe sent))))))))

(defvar-local completer--tick nil "`buffer-chars-modified-tick' after the last command.")

(defun completer--post-command ()
  "After each command: dismiss the ghost text; after an edit, ask again."
  (completer-clear)
  (when completer--timer
    (cancel-timer completer--timer)
    (setq completer--timer nil))
  (let ((tick (buffer-chars-modified-tick)))
    (unless (eql tick completer--tick)
      (setq completer--tick tick)
      (completer--cancel)                 ; only the latest text is worth computing
      (setq completer--timer
            (run-with-idle-timer completer-idle-delay nil
                                 (let ((buffer (current-buffer)))
                                   (lambda ()
                                     (when (buffer-live-p buffer)
                                       (with-current-buffer buffer
                                         (when completer-mode (completer--request)))))))))))

;;;###autoload
(define-minor-mode completer-mode
  "Ghost text from `completer serve' (through eglot) as you type; TAB accepts it.
Also keeps the completion menu in the server's order (see the Commentary)."
  :lighter " Compl"
  :keymap completer-mode-map
  (if completer-mode
      (progn
        (setq completer--tick (buffer-chars-modified-tick))
        (add-hook 'post-command-hook #'completer--post-command nil t)
        (setq-local completion-category-overrides
                    (cons '(eglot (styles basic)) (default-value 'completion-category-overrides))))
    (remove-hook 'post-command-hook #'completer--post-command t)
    (kill-local-variable 'completion-category-overrides)
    (completer--cancel)
    (completer-clear)))

(defun completer--server-p (server)
  "Whether SERVER (an eglot connection) runs `completer serve'."
  (let ((proc (jsonrpc--process server)))
    (and (processp proc)
         (let ((cmd (process-command proc)))
           (and (member "serve" cmd)
                (cl-some (lambda (arg) (string-match-p "completer" arg)) cmd))))))

(defun completer--shutdown-servers ()
  "Ask every `completer serve' eglot runs to shut down (on `kill-emacs-hook')."
  (when (boundp 'eglot--servers-by-project)
    (maphash (lambda (_project servers)
               (dolist (server servers)
                 (when (and (jsonrpc-running-p server) (completer--server-p server))
                   (ignore-errors (eglot-shutdown server nil 1)))))
             eglot--servers-by-project)))

(defun completer--maybe-enable ()
  "Turn `completer-mode' on in a buffer eglot manages with `completer serve'."
  (let ((server (eglot-current-server)))
    (if (and (bound-and-true-p eglot--managed-mode) server (completer--server-p server))
        (completer-mode 1)
      (when completer-mode (completer-mode -1)))))

;;;###autoload
(defun completer-eglot-setup ()
  "Use `completer serve' for `completer-modes' in eglot.
Its buffers get `completer-mode'."
  (dolist (mode completer-modes)
    (setq eglot-server-programs
          (cons (cons mode completer-command)
                (cl-remove-if (lambda (entry) (equal (car entry) mode)) eglot-server-programs))))
  (add-hook 'eglot-managed-mode-hook #'completer--maybe-enable)
  (add-hook 'kill-emacs-hook #'completer--shutdown-servers))

;;;###autoload
(defun completer-lsp-mode-setup ()
  "Register `completer serve' with lsp-mode as an add-on client for Python."
  (with-eval-after-load 'lsp-mode
    (when (fboundp 'lsp-register-client)
      (lsp-register-client
       (make-lsp-client :new-connection (lsp-stdio-connection (lambda () completer-command))
                        :activation-fn (lsp-activate-on "python")
                        :add-on? t
                        :priority -1
                        :server-id 'completer
                        ;; settings from `lsp-register-custom-settings' ("completer.threshold" ...)
                        :initialized-fn
                        (lambda (workspace)
                          (let ((lsp--cur-workspace workspace))
                            (lsp--set-configuration (lsp-configuration-section "completer")))))))))

(provide 'completer)
;;; completer.el ends here
